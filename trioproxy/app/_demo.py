"""``trioproxy demo``: the proxy in front of a built-in origin, so a first curl gets an answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from ..core._accesslog import AccessRecord
from ..engine._listen import ListenError, open_listener
from ._command import build_parser, configure_diagnostics, load_config, log, parse_options
from ._origin import Receive, Scope, Send, handle_lifespan, origin
from ._run import run_proxy, run_with_access_log


async def demo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Says hello and shows the request as the origin received it, forwarding headers and all."""
    if scope["type"] == "lifespan":
        await handle_lifespan(receive, send)
        return
    while (await receive()).get("more_body"):
        pass
    seen = {
        "hello": "from the trioproxy demo origin (hypercorn), through trioproxy",
        "method": scope["method"],
        "path": scope["path"],
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
    }
    body = json.dumps(seen, indent=2).encode() + b"\n"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str]) -> int:
    # Only what the demo honours: its upstream is its own origin, and it runs one process.
    offered = ("listen", "config_dir", "log_level", "log_format")
    defaults = {"listen": "127.0.0.1:8080"}
    what = "The proxy in front of a built-in demo origin (hypercorn on loopback)."
    parser = build_parser("trioproxy demo", options=offered, defaults=defaults, what=what)
    parsed = parse_options(parser, argv, defaults)
    if parsed is None:
        return 2
    args, explicit = parsed
    configure_diagnostics(args.log_level, args.log_format)
    settings = load_config(args.config_dir, explicit="config_dir" in explicit)
    if settings is None:
        return 2
    if not args.log_format:
        configure_diagnostics(args.log_level, settings.diagnostics.format)
    try:
        listener = open_listener(*args.listen)
    except ListenError as exc:
        log.error("%s (choose another address with --listen HOST:PORT)", exc)
        return 1

    async def run(
        access_log: Callable[[AccessRecord], None], access_log_dropped: Callable[[], int]
    ) -> None:
        async with origin(demo_app) as url:
            parts = urlsplit(url)
            log.info("demo origin on %s", parts.netloc)
            upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
            await run_proxy(settings, [listener], upstream, access_log, access_log_dropped)

    run_with_access_log(settings, run)
    log.info("stopped")  # as the proxy says it: a harness waits for the matching pair
    return 0
