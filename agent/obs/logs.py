"""Structured JSON logs: LiveKit's records and ours in one stream, with session context.

- One formatter (structlog's ``ProcessorFormatter``) renders every stdlib record, ours and
  livekit-agents', as one JSON object per line, with the record's ``extra`` fields.
- Context: :func:`bind` puts ``room``, ``participant``, ``tenant`` and ``job_id`` in
  structlog's contextvars; a record factory copies them onto every record created in that
  context. That is what carries them across processes: job processes forward their records
  to the main process, which formats them.
- Redaction: values equal to a configured secret, bearer tokens and JWT-shaped strings
  (three base64url segments, whatever the header says) are replaced by ``***``;
  transcript-bearing fields (user and agent text, and every ``lk.pii.*`` field livekit-agents
  marks as personal) are dropped unless ``LOG_TRANSCRIPTS`` is set.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

CONTEXT_KEYS = ("room", "participant", "tenant", "job_id")
# fields livekit-agents and we use for what people said
TRANSCRIPT_KEYS = frozenset(
    {"transcript", "user_transcript", "text", "lk.pii.text", "content", "reply", "user_input"}
)
# any JWS compact serialization: a header that is not the usual '{"' (eyJ...) still signs
# a token; the signature segment of every accepted algorithm is at least 43 characters
_JWT = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{43,}")


def _is_pii(key: str) -> bool:
    """livekit-agents marks personal data with a ``pii`` segment (``lk.pii.user_input``)."""
    return "pii" in key.split(".")


_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
_installed_factory = False
# third-party loggers that put what was said into the message text at DEBUG
_TEXT_IN_MESSAGE_LOGGERS = ("piper.voice",)
# chatty at INFO: one line per decode
_NOISY_LOGGERS = ("faster_whisper",)


def _quiet_engines(keep_transcripts: bool) -> None:
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not keep_transcripts:
        for name in _TEXT_IN_MESSAGE_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)


def bind(**context: str | None) -> None:
    """Bind session context for every record logged from here (and from tasks started
    here)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in context.items() if v})


def _install_record_factory() -> None:
    global _installed_factory
    if _installed_factory:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        # under one attribute of our own: a record's ``extra`` may use the same names, and
        # logging refuses extras that overwrite existing attributes
        context = {
            k: v for k, v in structlog.contextvars.get_contextvars().items() if k in CONTEXT_KEYS
        }
        if context:
            record.voice_session_context = context
        return record

    logging.setLogRecordFactory(factory)
    _installed_factory = True


class Redactor:
    """A structlog processor that masks secrets and drops transcripts."""

    def __init__(self, secrets: Iterable[str], *, keep_transcripts: bool = False) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._keep_transcripts = keep_transcripts

    def mask(self, value: Any) -> Any:
        """``value`` with secrets, bearer tokens and JWTs masked (strings, dicts, lists)."""
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, "***")
            value = _BEARER.sub("Bearer ***", value)
            return _JWT.sub("***", value)
        if isinstance(value, dict):
            return {k: self.mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(v) for v in value]
        return value

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key in ("token", "authorization", "password", "secret", "api_key"):
                event_dict[key] = "***"
            elif not self._keep_transcripts and (key in TRANSCRIPT_KEYS or _is_pii(key)):
                del event_dict[key]
            else:
                event_dict[key] = self.mask(event_dict[key])
        return event_dict


def _drop_internal(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in ("_record", "_from_structlog"):
        event_dict.pop(key, None)
    for key, value in (event_dict.pop("voice_session_context", None) or {}).items():
        event_dict.setdefault(key, value)
    return event_dict


def json_formatter(
    secrets: Iterable[str] = (), *, keep_transcripts: bool = False
) -> structlog.stdlib.ProcessorFormatter:
    pre_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            _drop_internal,
            structlog.processors.format_exc_info,
            Redactor(secrets, keep_transcripts=keep_transcripts),
            structlog.processors.JSONRenderer(default=str),
        ],
    )


def configure(
    *,
    level: str = "INFO",
    secrets: Iterable[str] = (),
    keep_transcripts: bool = False,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every record to ``stream`` (stderr) as JSON; returns the handler."""
    _install_record_factory()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter(secrets, keep_transcripts=keep_transcripts))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    _quiet_engines(keep_transcripts)
    return handler


def adopt_livekit_handlers(secrets: Iterable[str] = (), *, keep_transcripts: bool = False) -> None:
    """Under LiveKit's CLI: keep its handlers (and their global fields) but render with our
    formatter, so its records and ours are one JSON stream. Call once its logging is set up
    (the worker's ``worker_started`` event)."""
    _install_record_factory()
    formatter = json_formatter(secrets, keep_transcripts=keep_transcripts)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    _quiet_engines(keep_transcripts)


def install_context_factory(keep_transcripts: bool = False) -> None:
    """For job processes: copy the bound context onto records before they are forwarded,
    and keep engine loggers from putting transcripts in their messages."""
    _install_record_factory()
    _quiet_engines(keep_transcripts)
