"""Errors a request gets, each with the HTTP status it maps to (one tree, the httpx way:
catch ``RequestError`` for all of them, a branch for a kind).

::

    RequestError               base: code, message, status
    ├── BadRequest             400  a body, query or field the API cannot take
    ├── TooLarge               413  a body or an answer over its cap
    ├── Unavailable            503  a part the request needs is down (a voice, memory)
    └── AuthError              authentication and admission
        ├── InvalidRoomError       400  a room name outside 1-128 of letters, digits and -_.:@
        ├── InvalidTokenError      401  missing, malformed, badly signed, wrong aud/iss,
        │                               expired, living too long, a tenant outside the set
        ├── TenantNotAllowedError  403  a valid token for a tenant this worker does not serve
        ├── RoomNotAllowedError    403  a room that is not the tenant's (auth/rooms.py)
        ├── RateLimitedError       429  over a tenant limit; retry_after in seconds
        └── LimiterUnavailableError 503 the shared limit store (Redis) cannot be reached and
                                        the worker is set to fail closed

Messages never contain the token or a secret.
"""

from __future__ import annotations


class RequestError(Exception):
    status = 500
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(RequestError):
    status = 400
    code = "bad_request"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class TooLarge(RequestError):
    status = 413
    code = "too_large"


class Unavailable(RequestError):
    status = 503
    code = "unavailable"


class AuthError(RequestError):
    status = 500
    code = "auth_error"


class InvalidTokenError(AuthError):
    status = 401
    code = "invalid_token"


class InvalidRoomError(AuthError):
    status = 400
    code = "invalid_room"


class RoomNotAllowedError(AuthError):
    status = 403
    code = "room_not_allowed"


class TenantNotAllowedError(AuthError):
    status = 403
    code = "tenant_not_allowed"


class RateLimitedError(AuthError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LimiterUnavailableError(AuthError):
    status = 503
    code = "limiter_unavailable"
