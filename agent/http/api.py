"""The worker's HTTP API (aiohttp), for operators and for JWT-holding backends.

Routes are declared once in :data:`ROUTES`; the application and the OpenAPI document
(``python -m agent openapi``) are both built from that table, and a test checks the served
routes against ``docs/openapi.yaml``.

Every ``/v1`` route needs ``Authorization: Bearer <JWT>``; the tenant is read from the
token and each request is held to the tenant's limits. Errors are JSON
``{"error": {"code", "message"}}`` with 400/401/403/413/429/503; a token never appears in
a response or a log line. ``/metrics`` needs ``METRICS_TOKEN`` when one is set.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from agent import __version__, json_input
from agent.conversation.memory import MAX_IDENTITY_CHARS, MemoryStore, MemoryUnavailableError
from agent.http.speaker import AudioTooLong, Speaker, wav_header
from agent.obs.metrics import render
from agent.recording.archive import S3Archive
from agent.recording.store import ID_PATTERN, RecordingFiles, RecordingStore, summary
from agent.settings import Settings
from agent.worker.dispatch import DispatchMetadata, MetadataError
from auth.errors import (
    BadRequest,
    InvalidTokenError,
    NotFound,
    RequestError,
    TooLarge,
    Unavailable,
)
from auth.grants import DispatchGrants
from auth.limits import Limiter
from auth.rooms import ROOM_NAME, check_room
from auth.tokens import Identity, TokenVerifier

logger = logging.getLogger("agent.http")
MAX_BODY_BYTES = 64 * 1024
MAX_SPEAK_CHARS = 2000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def git_sha() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=Path(__file__).resolve().parent,
                capture_output=True,
                text=True,
                timeout=2,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class ApiContext:
    """What the handlers need, passed in (tests build it with their own parts)."""

    settings: Settings
    verifier: TokenVerifier
    limiter: Limiter
    speaker: Speaker | None = None
    dispatcher: Callable[[str, str], Awaitable[str]] | None = None
    grants: DispatchGrants | None = None
    memory: MemoryStore | None = None
    recordings: RecordingStore | None = None
    archive: S3Archive | None = None  # recordings kept in a bucket (RECORDING_S3_BUCKET)
    readiness: Callable[[], dict[str, Any]] = field(default=lambda: {})
    collectors: list[Any] = field(default_factory=list)
    sha: str = field(default_factory=git_sha)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler_name: str
    summary: str
    auth: bool
    request: dict[str, Any] | None = None
    responses: dict[str, str] = field(default_factory=dict)


ROUTES = [
    Route(
        "GET",
        "/",
        "index",
        "Name, version and git commit of this worker.",
        False,
        responses={"200": "application/json"},
    ),
    Route(
        "GET",
        "/healthz",
        "healthz",
        "The process is alive.",
        False,
        responses={"200": "application/json"},
    ),
    Route(
        "GET",
        "/readyz",
        "readyz",
        "Ready to serve: models loaded, and connected to LiveKit when run by `start`.",
        False,
        responses={"200": "application/json", "503": "application/json"},
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics (with `Authorization: Bearer <METRICS_TOKEN>` when that is set).",
        False,
        responses={"200": "text/plain", "401": "application/json"},
    ),
    Route(
        "GET",
        "/v1/whoami",
        "whoami",
        "The caller's tenant and its limits.",
        True,
        responses={"200": "application/json"},
    ),
    Route(
        "POST",
        "/v1/speak",
        "speak",
        "Synthesize text with the worker's voice (through the clip cache).",
        True,
        request={
            "type": "object",
            "required": ["text"],
            "additionalProperties": False,
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": MAX_SPEAK_CHARS},
                "tts": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"speed": {"type": "number", "minimum": 0.5, "maximum": 2.0}},
                },
            },
        },
        responses={"200": "audio/wav", "413": "application/json"},
    ),
    Route(
        "GET",
        "/v1/voices",
        "voices",
        "The voices a session may pick with `tts.voice` (docs/voices-and-languages.md): "
        "id, engine, language, name and sample rate; the default; the voice files skipped "
        "as broken.",
        True,
        responses={"200": "application/json"},
    ),
    Route(
        "GET",
        "/v1/memory/{identity}",
        "memory_get",
        "What the agent remembers of a participant of the caller's tenant (recent messages "
        "and a summary; null when nothing is kept).",
        True,
        responses={"200": "application/json"},
    ),
    Route(
        "DELETE",
        "/v1/memory/{identity}",
        "memory_delete",
        "Forget a participant of the caller's tenant.",
        True,
        responses={"200": "application/json"},
    ),
    Route(
        "GET",
        "/v1/recordings",
        "recordings_list",
        "The caller's tenant's session recordings, newest first (docs/recording.md).",
        True,
        responses={"200": "application/json"},
    ),
    Route(
        "GET",
        "/v1/recordings/{recording_id}",
        "recording_get",
        "A recording's transcript: turns with speaker, text, times and latencies, and gaps.",
        True,
        responses={"200": "application/json", "404": "application/json"},
    ),
    Route(
        "GET",
        "/v1/recordings/{recording_id}/audio",
        "recording_audio",
        "A recording's audio: stereo OGG/Opus, the caller left, the agent right.",
        True,
        responses={"200": "audio/ogg", "404": "application/json"},
    ),
    Route(
        "DELETE",
        "/v1/recordings/{recording_id}",
        "recording_delete",
        "Delete a recording (audio and transcript).",
        True,
        responses={"200": "application/json", "404": "application/json"},
    ),
    Route(
        "POST",
        "/v1/dispatch",
        "dispatch",
        "Dispatch this agent into a room for the caller's tenant.",
        True,
        request={
            "type": "object",
            "required": ["room"],
            "additionalProperties": False,
            "properties": {
                "room": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 128,
                    "pattern": ROOM_NAME.pattern,
                    "description": "a room of the caller's tenant: `<tenant>-...` unless the "
                    "token's `rooms` claim says otherwise",
                },
                "instructions": {"type": "string", "maxLength": 8000},
                "participant": {"type": "string", "maxLength": 256},
                "config": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "the room's session config (docs/session-control.md), "
                    'e.g. `{"audio": false}` for a text/relay room',
                },
                "tools": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {"type": "object"},
                    "description": "HTTP tools for the room's sessions (docs/tools.md)",
                },
                "mcp_servers": {
                    "type": "array",
                    "maxItems": 4,
                    "description": "MCP servers for the room's sessions (docs/tools.md)",
                },
            },
        },
        responses={"200": "application/json"},
    ),
]


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as e:
        headers = {}
        if hasattr(e, "retry_after"):
            headers["Retry-After"] = str(int(e.retry_after + 0.999))
        return _error(e.status, e.code, e.message, headers)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error(e.status, e.reason.lower().replace(" ", "_"), e.reason)
    except Exception:
        logger.exception("request failed", extra={"path": request.path})
        return _error(500, "internal", "internal error")


class Api:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def _identity(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidTokenError("missing bearer token")
        if not self.ctx.verifier.config.enabled:
            raise Unavailable("authentication is not configured (AUTH_JWT_SECRET/AUTH_JWKS_URL)")
        identity = await self.ctx.verifier.averify(token.strip())
        await self.ctx.limiter.check_request(identity.tenant)
        return identity

    @staticmethod
    async def _json(request: web.Request, route: Route) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json_input.loads(raw, what="body")
        except json_input.JsonInputError as e:
            raise BadRequest(str(e)) from None
        _check(body, route.request or {}, "body")
        return body  # type: ignore[no-any-return]

    async def index(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "name": "local-voice-agent",
                "version": __version__,
                "git_sha": self.ctx.sha,
                "agent_name": self.ctx.settings.agent_name,
            }
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        state = self.ctx.readiness()
        ready = all(v in (True, "connected", "loaded", "not used") for v in state.values())
        return web.json_response({"ready": ready, **state}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        expected = self.ctx.settings.metrics_token
        if expected:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected.encode()
            ):
                raise InvalidTokenError("/metrics needs the metrics token")
        body, content_type = await asyncio.to_thread(render, self.ctx.collectors)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def whoami(self, request: web.Request) -> web.Response:
        ident = await self._identity(request)
        limits = self.ctx.limiter.policy.limits_for(ident.tenant)
        return web.json_response(
            {"tenant": ident.tenant, "subject": ident.subject, "limits": _limits_dict(limits)}
        )

    async def speak(self, request: web.Request) -> web.StreamResponse:
        ident = await self._identity(request)
        body = await self._json(request, _route("speak"))
        text = body["text"]
        if self.ctx.speaker is None:
            raise Unavailable("speech synthesis is not available in this process")
        speed = body.get("tts", {}).get("speed")
        try:
            parts = await self.ctx.speaker.prepare(text, speed)
        except AudioTooLong as e:
            raise TooLarge(str(e)) from None
        await self.ctx.limiter.check_tts_chars(ident.tenant, len(text))
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await response.prepare(request)
        await response.write(wav_header(self.ctx.speaker.sample_rate))
        try:
            async for pcm in self.ctx.speaker.stream(ident.tenant, parts, speed):
                await response.write(pcm)
        except Exception:  # the status is sent: end the stream short, visibly
            logger.exception("speak failed mid-stream", extra={"tenant": ident.tenant})
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    async def voices(self, request: web.Request) -> web.Response:
        await self._identity(request)
        if self.ctx.speaker is None:
            raise Unavailable("speech synthesis is not available in this process")
        engines = self.ctx.speaker.engines
        if engines.settings.tts_base_url:  # the speech server's own voices: not ours to list
            return web.json_response({"default": None, "voices": [], "skipped": []})
        catalog = engines.voices.catalog
        return web.json_response(
            {
                "default": catalog.default,
                "voices": [voice.as_dict() for voice in catalog.all()],
                "skipped": catalog.problems,
            }
        )

    async def _memory_target(self, request: web.Request) -> tuple[str, str, MemoryStore]:
        ident = await self._identity(request)
        identity = request.match_info["identity"]
        if not 0 < len(identity) <= MAX_IDENTITY_CHARS or not identity.isprintable():
            raise BadRequest(f"identity must be 1-{MAX_IDENTITY_CHARS} printable characters")
        if self.ctx.memory is None:
            raise Unavailable("memory is not available in this process")
        return ident.tenant, identity, self.ctx.memory

    async def memory_get(self, request: web.Request) -> web.Response:
        tenant, identity, memory = await self._memory_target(request)
        try:
            record = await memory.load(tenant, identity)  # the tenant's own key, always
        except MemoryUnavailableError as e:
            raise Unavailable(str(e)) from None
        return web.json_response(
            {"identity": identity, "remembered": record.as_dict() if record else None}
        )

    async def memory_delete(self, request: web.Request) -> web.Response:
        tenant, identity, memory = await self._memory_target(request)
        try:
            deleted = await memory.delete(tenant, identity)
        except MemoryUnavailableError as e:
            raise Unavailable(str(e)) from None
        logger.info("memory deleted", extra={"tenant": tenant, "deleted": deleted})
        return web.json_response({"identity": identity, "deleted": deleted})

    async def _recording_id(self, request: web.Request) -> tuple[str, str]:
        """The caller's tenant and the recording id in the path (or 404: ids are looked up
        under the caller's own tenant only, so another tenant's id is not found either)."""
        ident = await self._identity(request)
        if self.ctx.recordings is None and self.ctx.archive is None:
            raise Unavailable("recordings are not available in this process")
        rid = request.match_info["recording_id"]
        if not ID_PATTERN.match(rid):
            raise NotFound("no such recording")
        return ident.tenant, rid

    def _local(self, tenant: str, rid: str) -> RecordingFiles:
        files = self.ctx.recordings.find(tenant, rid) if self.ctx.recordings else None
        if files is None:
            raise NotFound("no such recording")
        return files

    async def recordings_list(self, request: web.Request) -> web.Response:
        ident = await self._identity(request)
        archive, local = self.ctx.archive, self.ctx.recordings
        if archive is not None:
            ids = await asyncio.to_thread(archive.ids, ident.tenant)
            return web.json_response({"recordings": [{"id": rid} for rid in ids[:1000]]})
        if local is None:
            raise Unavailable("recordings are not available in this process")
        found = await asyncio.to_thread(local.list, ident.tenant)
        return web.json_response({"recordings": [summary(f) for f in found[:1000]]})

    async def recording_get(self, request: web.Request) -> web.Response:
        tenant, rid = await self._recording_id(request)
        if self.ctx.archive is not None:
            data = await asyncio.to_thread(self.ctx.archive.transcript, tenant, rid)
            if data is None:
                raise NotFound("no such recording")
            return web.Response(body=data, content_type="application/json")
        files = self._local(tenant, rid)
        try:
            return web.json_response(json.loads(files.transcript.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            raise NotFound("this recording has no transcript") from None

    async def recording_audio(self, request: web.Request) -> web.StreamResponse:
        tenant, rid = await self._recording_id(request)
        if self.ctx.archive is not None:
            chunks = await asyncio.to_thread(self.ctx.archive.audio, tenant, rid)
            if chunks is None:
                raise NotFound("this recording has no audio")
            response = web.StreamResponse(headers={"Content-Type": "audio/ogg"})
            await response.prepare(request)
            while chunk := await asyncio.to_thread(next, chunks, b""):
                await response.write(chunk)
            await response.write_eof()
            return response
        files = self._local(tenant, rid)
        if not files.audio.exists():
            raise NotFound("this recording has no audio")
        return web.FileResponse(files.audio, headers={"Content-Type": "audio/ogg"})

    async def recording_delete(self, request: web.Request) -> web.Response:
        tenant, rid = await self._recording_id(request)
        if self.ctx.archive is not None:
            deleted = await asyncio.to_thread(self.ctx.archive.delete, tenant, rid)
        else:
            deleted = self._local(tenant, rid) is not None and bool(
                self.ctx.recordings and self.ctx.recordings.delete(tenant, rid)
            )
        if not deleted:
            raise NotFound("no such recording")
        logger.info("recording deleted", extra={"tenant": tenant, "recording": rid})
        return web.json_response({"id": rid, "deleted": True})

    async def dispatch(self, request: web.Request) -> web.Response:
        ident = await self._identity(request)
        body = await self._json(request, _route("dispatch"))
        room = check_room(
            ident.tenant, body["room"], ident.rooms, self.ctx.limiter.policy.known_tenants()
        )
        if self.ctx.dispatcher is None or self.ctx.grants is None or not self.ctx.grants.enabled:
            raise Unavailable("LiveKit is not configured (LIVEKIT_URL, _API_KEY, _API_SECRET)")
        # a grant for this tenant, room and agent, never the caller's own token: anyone who
        # can read job metadata could replay that
        grant, issued = self.ctx.grants.issue(ident.tenant, room, self.ctx.settings.agent_name)
        metadata: dict[str, Any] = {"grant": grant}
        extra = {k: body[k] for k in ("config", "tools", "mcp_servers") if k in body}
        if extra:
            # checked here so a bad config or tool is the caller's 400, not a job LiveKit
            # cannot place
            try:
                meta = DispatchMetadata.parse(json.dumps(extra))
                meta.room_tools(self.ctx.settings, ident.tenant)
            except MetadataError as e:
                raise BadRequest(str(e)) from None
        for key in ("instructions", "participant", "config", "tools", "mcp_servers"):
            if key in body:
                metadata[key] = body[key]
        dispatch_id = await self.ctx.dispatcher(room, json.dumps(metadata))
        logger.info(
            "dispatch created",
            extra={"tenant": ident.tenant, "room": room, "grant_id": issued.grant_id},
        )
        return web.json_response({"dispatch_id": dispatch_id, "room": room, "tenant": ident.tenant})


def _limits_dict(limits: Any) -> dict[str, int]:
    names = (
        "concurrent_sessions",
        "sessions_per_minute",
        "requests_per_minute",
        "tts_chars_per_minute",
    )
    return {n: getattr(limits, n) for n in names if getattr(limits, n) is not None}


def _route(name: str) -> Route:
    return next(r for r in ROUTES if r.handler_name == name)


def _check(value: Any, schema: dict[str, Any], where: str) -> None:
    """The small JSON-schema subset the routes use: object, string, number."""
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            raise BadRequest(f"{where} must be an object")
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                raise BadRequest(f"{where}.{key} is required")
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is not True:  # checked by its own parser
                raise BadRequest(f"unknown field {where}.{key}")
    elif kind == "string":
        if not isinstance(value, str):
            raise BadRequest(f"{where} must be a string")
        if len(value.strip()) < schema.get("minLength", 0):
            raise BadRequest(f"{where} must not be empty")
        if len(value) > schema.get("maxLength", 1 << 30):
            raise BadRequest(f"{where} is longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            raise BadRequest(f"{where} has characters that are not allowed")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{where} must be a number")
        if not schema.get("minimum", -1e300) <= value <= schema.get("maximum", 1e300):
            raise BadRequest(
                f"{where} must be within [{schema.get('minimum')}, {schema.get('maximum')}]"
            )


def build_app(ctx: ApiContext) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[errors_middleware])
    api = Api(ctx)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, getattr(api, route.handler_name))
    return app


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in ROUTES:
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler_name}
        if names := re.findall(r"{(\w+)}", r.path):
            op["parameters"] = [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in names
            ]
        if r.auth:
            op["security"] = [{"bearer": []}]
        if r.request:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": r.request}},
            }
        op["responses"] = {
            code: {"description": "OK" if code == "200" else "error", "content": {ctype: {}}}
            for code, ctype in r.responses.items()
        }
        if r.auth:
            for code, why in (
                ("400", "bad body"),
                ("401", "missing or invalid token"),
                ("403", "tenant not allowed"),
                ("413", "body too large"),
                ("429", "over a tenant limit (see Retry-After)"),
                ("503", "limit store or dependency unavailable"),
            ):
                op["responses"].setdefault(
                    code,
                    {
                        "description": why,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "local-voice-agent worker API", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
    }
