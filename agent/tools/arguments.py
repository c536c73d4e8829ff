"""The LLM's arguments, checked against a tool's JSON Schema before anything is sent."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agent.tools.errors import InvalidArgumentsError

MAX_ARGUMENT_BYTES = 16 * 1024


class ArgumentCheck:
    def __init__(self, schema: dict[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(schema)
            self._validator: Draft202012Validator | None = Draft202012Validator(schema)
        except SchemaError:  # an MCP server's schema we cannot use: the server checks
            self._validator = None

    def __call__(self, arguments: Any) -> dict[str, Any]:
        """The arguments if the schema accepts them; otherwise an error saying why, in
        words the LLM can correct itself from."""
        if not isinstance(arguments, dict):
            raise InvalidArgumentsError("invalid arguments: expected an object")
        if len(json.dumps(arguments, default=str)) > MAX_ARGUMENT_BYTES:
            raise InvalidArgumentsError(
                f"invalid arguments: larger than {MAX_ARGUMENT_BYTES} bytes"
            )
        if self._validator is not None:
            errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
            if errors:
                where = "/".join(str(p) for p in errors[0].path) or "arguments"
                raise InvalidArgumentsError(
                    f"invalid arguments: {where}: {errors[0].message}"[:300]
                )
        return arguments
