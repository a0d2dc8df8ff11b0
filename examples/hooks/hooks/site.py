"""Three hook points of one hook: a computed response header, JSON error bodies, and an
access-log field taken from a request header."""

import json
import time

from trioproxy.hooks import Example, Exchange, ResponseHead


class Site:
    async def request(self, exchange: Exchange) -> None:
        exchange.state["started"] = time.monotonic()

    async def response(self, exchange: Exchange, response: ResponseHead) -> None:
        # A computed response header: how long the proxy and origin took, in milliseconds.
        took_ms = (time.monotonic() - exchange.state["started"]) * 1000
        exchange.set_response_header("Server-Timing", f"proxy;dur={took_ms:.1f}")
        # A JSON error body instead of whatever the origin sends with a 5xx.
        if response.status >= 500:
            body = {"error": "upstream_failed", "request_id": exchange.request.request_id}
            exchange.respond(
                response.status, json.dumps(body) + "\n", {"Content-Type": "application/json"}
            )

    async def access(self, exchange: Exchange, status: int) -> None:
        # An access-log field from a request header ("-" when it is missing).
        exchange.log("client_version", exchange.request.header("x-client-version") or "-")


EXAMPLES = [
    Example(
        "GET /page",
        origin_status=503,
        expect_status=503,
        expect_headers={"Content-Type": "application/json"},
    ),
    Example(
        "GET /page",
        headers={"X-Client-Version": "ios-4.2"},
        expect_log={"client_version": "ios-4.2"},
    ),
]
