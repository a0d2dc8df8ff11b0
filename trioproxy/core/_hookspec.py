"""The hook points: their names and parameters, shared by the loader, the checker and the API.

Pure data, so that ``trioproxy validate`` checks a hook file without importing trio.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HOOK_POINTS", "OPT_OUT_COMMENT"]

# Each hook point a hook may define (every one an ``async def``), with its parameters after
# ``self``. A hook named by a rule is an async function (the request point alone) or a class
# (instantiated once, without arguments, when the configuration is loaded) or an object
# defining one or more of these.
HOOK_POINTS: Final = {
    "request": ("exchange",),
    "response": ("exchange", "response"),
    "access": ("exchange", "status"),
    "lifespan": ("nursery",),
    # Streaming transformers: each slice of the body as it passes, then b"" with end=True;
    # what they return is forwarded instead (and the body re-framed by the proxy).
    "request_body": ("exchange", "chunk", "end"),
    "response_body": ("exchange", "chunk", "end"),
}

# Written on a line the blocking-call lint flags, this says the call is meant (it runs in a
# thread through `trioproxy.hooks.run_blocking`, or only at import).
OPT_OUT_COMMENT: Final = "# trioproxy: allow-blocking"
