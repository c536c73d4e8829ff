"""Errors of authentication and admission, each with the HTTP status it maps to.

::

    AuthError                  base: code, message, status
    ├── InvalidRoomError       400  a room name outside 1-128 of letters, digits and -_.:@
    ├── InvalidTokenError      401  missing, malformed, badly signed, wrong aud/iss, expired,
    │                               living too long, a tenant name outside the allowed set
    ├── TenantNotAllowedError  403  a valid token for a tenant this worker does not serve
    ├── RoomNotAllowedError    403  a room that is not the tenant's (auth/rooms.py)
    ├── RateLimitedError       429  over a tenant limit; retry_after in seconds
    └── LimiterUnavailableError 503 the shared limit store (Redis) cannot be reached and the
                                    worker is set to fail closed

Messages never contain the token or a secret.
"""

from __future__ import annotations


class AuthError(Exception):
    status = 500
    code = "auth_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


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
