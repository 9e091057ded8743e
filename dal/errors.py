"""Domain errors raised by the data access layer.

Callers above `dal/` catch these instead of driver exceptions (asyncpg, redis), so that a
service never needs to know which database answered.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "Conflict",
    "DalError",
    "DatabaseUnavailable",
    "NotFound",
    "RedisUnavailable",
    "UnsafeRedisPolicy",
    "UnsupportedServer",
    "mask_url",
]

_MASK = "***"
_SECRET_QUERY_KEYS = frozenset({"password", "pass", "passwd", "sslpassword"})


def mask_url(url: str) -> str:
    """`url` with any password (in the authority or the query string) replaced by ***: the
    one masking helper, for messages and logs (bot/cli.py's too), never for connecting."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{_MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode(
                [(k, _MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                safe="*",
            )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class DalError(Exception):
    """Base class of every data access error."""


class NotFound(DalError):
    """The row asked for does not exist (or is soft-deleted)."""


class Conflict(DalError):
    """The write collides with an existing row (unique key)."""


class DatabaseUnavailable(DalError):
    """PostgreSQL cannot be reached; the message names the masked URL and the reason."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = mask_url(url) if url is not None else None

    @classmethod
    def unreachable(cls, url: str, reason: object) -> DatabaseUnavailable:
        """The standard one-line message: `PostgreSQL unreachable at <masked url>: <reason>`."""
        masked = mask_url(url)
        return cls(f"PostgreSQL unreachable at {masked}: {_one_line(reason, url)}", url=url)


class RedisUnavailable(DalError):
    """Redis cannot be reached (or refused the command for lack of connections)."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = mask_url(url) if url is not None else None

    @classmethod
    def unreachable(cls, url: str, reason: object) -> RedisUnavailable:
        """The standard one-line message: `Redis unreachable at <masked url>: <reason>`."""
        masked = mask_url(url)
        return cls(f"Redis unreachable at {masked}: {_one_line(reason, url)}", url=url)


class UnsupportedServer(DalError):
    """The server answers but is older than the oldest version this project supports.

    The message is one line naming the server, the masked URL, the version found and the
    oldest supported one.
    """

    def __init__(self, *, server: str, url: str, found: str, oldest: str) -> None:
        super().__init__(
            f"{server} at {mask_url(url)} is version {found}; ATTN needs {server} {oldest}"
            " or newer (see README, Supported servers)"
        )
        self.found = found
        self.oldest = oldest


class UnsafeRedisPolicy(DalError):
    """Redis may evict keys (its `maxmemory-policy` is not `noeviction`), or will not say.

    Live sessions, their records, `attendances:due` and the outbox have no expiry: an
    `allkeys-*` policy drops an idle session's check-ins (the finalizer then writes everyone
    absent), a `volatile-*` one the throttles and login marks. The message is one line naming
    the setting.
    """


def _one_line(reason: object, url: str) -> str:
    """The reason on one line, with the URL's password scrubbed should a driver echo it."""
    text = " ".join(str(reason).split()) or type(reason).__name__
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(url, mask_url(url)).replace(password, _MASK)
    return text
