"""The request body limit (nginx's ``client_max_body_size``): which one applies, and the 413.

Pure: no I/O, no trio. The engine checks a declared Content-Length before any byte goes
upstream, and a chunked body's declared chunk sizes as they arrive (`ChunkedChecker`
counts them before h11 parses the chunk), so no byte past the limit is ever forwarded.
"""

from __future__ import annotations

from ._errors import ClientError

__all__ = ["BodyTooLarge", "body_limit", "check_body_size"]


class BodyTooLarge(ClientError):
    """A request body over the limit (413; the connection closes after the answer)."""

    status = 413


def body_limit(global_bytes: int, rule_bytes: int | None) -> int:
    """The limit for one request: a matching rule's (even 0, which lifts the global limit
    for the paths it matches), else the global one. 0: unlimited."""
    return global_bytes if rule_bytes is None else rule_bytes


def check_body_size(size: int, limit: int, *, chunked: bool) -> None:
    """Raise `BodyTooLarge` if ``size`` bytes are over ``limit`` (0: no limit): a declared
    Content-Length, or the chunk sizes announced so far."""
    if limit and size > limit:
        how = "announced in chunks so far" if chunked else "by its Content-Length"
        raise BodyTooLarge(f"request body of {size} bytes {how}, over the limit of {limit}")
