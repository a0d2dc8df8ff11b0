"""``trioproxy demo``: the proxy in front of a built-in origin, so a first curl gets an answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from ._accesslog import AccessRecord
from ._addr import parse_host_port
from ._cli import build_parser, configure_diagnostics, log
from ._config import ConfigError, load_settings
from ._listen import ListenError, open_listener
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
    parser = build_parser("trioproxy demo", listen_default="127.0.0.1:8080")
    args = parser.parse_args(argv)
    configure_diagnostics(args.log_level)
    try:
        settings = load_settings(args.config_dir)
        listener = open_listener(*parse_host_port(args.listen))
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        return 2
    except (ListenError, ValueError) as exc:
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
    return 0
