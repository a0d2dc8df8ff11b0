"""Cookie-based A/B routing: rewrite /shop/... to /a/shop/... or /b/shop/...."""

import zlib

from trioproxy.hooks import Example, Exchange


async def split(exchange: Exchange) -> None:
    request = exchange.request
    bucket = request.cookie("ab")
    if bucket not in ("a", "b"):
        # No cookie yet: a stable choice per client, remembered with a cookie.
        bucket = "ab"[zlib.crc32(request.client.encode()) % 2]
        exchange.add_response_header("Set-Cookie", f"ab={bucket}; Path=/; Max-Age=2592000")
    rest = request.captures.get("rest") or "/"
    query = f"?{request.query}" if request.query else ""
    exchange.rewrite(f"/{bucket}/shop{rest}{query}")
    exchange.log("ab_bucket", bucket)


EXAMPLES = [
    Example(
        "GET /shop/cart",
        headers={"Cookie": "ab=b"},
        expect_upstream="/b/shop/cart",
        expect_log={"ab_bucket": "b"},
    ),
]
