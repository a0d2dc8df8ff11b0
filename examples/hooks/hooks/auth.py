"""A token check answering 401: the origin never sees a request without a valid token."""

import hmac

from trioproxy.hooks import Example, Exchange

# Read once, when the configuration is loaded (a real site would refresh them in a lifespan).
TOKENS = {"let-me-in", "another-token"}


async def check_token(exchange: Exchange) -> None:
    scheme, _, token = (exchange.request.header("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(token, t) for t in TOKENS):
        exchange.respond(
            401,
            "a bearer token is required\n",
            {"WWW-Authenticate": 'Bearer realm="api"'},
        )
        return
    exchange.remove_request_header("Authorization")  # the origin does not need it
    exchange.set_request_header("X-Authenticated", "yes")


# Run by `trioproxy validate` through this whole configuration (docs/reference/hooks.md).
EXAMPLES = [
    Example("GET /api/orders", expect_status=401, expect_upstream=None),
    Example(
        "GET /api/orders",
        headers={"Authorization": "Bearer let-me-in"},
        expect_status=200,
        expect_upstream="/api/orders",
        expect_upstream_headers={"X-Authenticated": "yes", "Authorization": None},
    ),
]
