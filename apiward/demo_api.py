"""A small, realistic demo API (a shop): users, orders, payments, products, and an internal corner.

It is deliberately imperfect, like real estates are: some endpoints need no credential, some return
e-mail addresses and card numbers, one takes its key in the query string, one is internal-only.
All data is synthetic (card numbers are well-known test numbers).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from aiohttp import web

SUBSCRIPTION_KEYS = {"demo-subscription-key-1", "demo-subscription-key-2"}
API_KEYS = {"demo-partner-key-7f3a"}
TEST_CARDS = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"]

USERS: list[dict[str, Any]] = [
    {
        "id": i,
        "name": name,
        "email": f"{name.lower().replace(' ', '.')}@example.com",
        "phone": f"+1 415 555 01{i:02d}",
        "tier": "gold" if i % 3 == 0 else "standard",
    }
    for i, name in enumerate(
        ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson"],
        start=1,
    )
]
PRODUCTS: list[dict[str, Any]] = [
    {"id": i, "sku": f"SKU-{1000 + i}", "name": f"Widget {i}", "price": 9.5 + i} for i in range(1, 21)
]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(sub: str, *, alg: str = "HS256", lifetime: int = 3600, scope: str = "shop.read") -> str:
    """An unsigned-for-real demo JWT (the demo API does not verify signatures; the sensor never does)."""
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": "demo-1"}).encode())
    now = int(time.time())
    payload = _b64url(
        json.dumps(
            {"iss": "https://login.demo.example", "aud": "shop-api", "sub": sub, "iat": now, "exp": now + lifetime,
             "scope": scope}
        ).encode()
    )
    signature = "" if alg.lower() == "none" else _b64url(b"demo-signature-" + sub.encode())
    return f"{header}.{payload}.{signature}"


def _has_jwt(request: web.Request) -> bool:
    auth = request.headers.get("Authorization", "")
    return auth.startswith("Bearer ") and auth.count(".") == 2


def _problem(status: int, title: str) -> web.Response:
    return web.json_response({"type": "about:blank", "title": title, "status": status}, status=status,
                             content_type="application/problem+json")


def _user_or_404(request: web.Request) -> dict[str, Any]:
    try:
        uid = int(request.match_info["user_id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    for user in USERS:
        if user["id"] == uid:
            return user
    raise web.HTTPNotFound()


async def list_users(request: web.Request) -> web.Response:
    if not _has_jwt(request):
        return _problem(401, "authentication required")
    return web.json_response({"users": USERS})


async def get_user(request: web.Request) -> web.Response:
    if not _has_jwt(request):
        return _problem(401, "authentication required")
    return web.json_response(_user_or_404(request))


async def create_user(request: web.Request) -> web.Response:
    if not _has_jwt(request):
        return _problem(401, "authentication required")
    body = await request.json()
    user = {"id": len(USERS) + 1, **{k: body.get(k) for k in ("name", "email", "phone")}}
    return web.json_response(user, status=201)


async def list_orders(request: web.Request) -> web.Response:
    key = request.headers.get("Ocp-Apim-Subscription-Key") or request.query.get("subscription-key")
    if key not in SUBSCRIPTION_KEYS:
        return _problem(401, "subscription key required")
    return web.json_response({"orders": [{"id": 5000 + i, "user_id": 1 + i % 6, "total": 19.5 * i} for i in range(8)]})


async def get_order(request: web.Request) -> web.Response:
    # Bug kept for the demo: this endpoint forgot its key check (an unauthenticated endpoint).
    order_id = request.match_info["order_id"]
    return web.json_response({"id": order_id, "status": "shipped", "email": "ada.lovelace@example.com"})


async def create_payment(request: web.Request) -> web.Response:
    if request.headers.get("X-Api-Key") not in API_KEYS:
        return _problem(403, "partner key required")
    body = await request.json()
    return web.json_response(
        {
            "id": "pay_" + str(int(time.time() * 1000)),
            "amount": body.get("amount"),
            "card_number": body.get("card_number"),
            "status": "authorized",
        },
        status=201,
    )


async def get_payment(request: web.Request) -> web.Response:
    if request.headers.get("X-Api-Key") not in API_KEYS:
        return _problem(403, "partner key required")
    idx = sum(map(ord, request.match_info["payment_id"])) % len(TEST_CARDS)
    return web.json_response({"id": request.match_info["payment_id"], "card_number": TEST_CARDS[idx],
                              "iban": "DE89370400440532013000", "status": "settled"})


async def list_products(request: web.Request) -> web.Response:
    return web.json_response({"products": PRODUCTS[: int(request.query.get("limit", "20") or 20)]})


async def get_product(request: web.Request) -> web.Response:
    pid = request.match_info["product_id"]
    for product in PRODUCTS:
        if str(product["id"]) == pid:
            return web.json_response(product)
    return _problem(404, "no such product")


async def search_products(request: web.Request) -> web.Response:
    q = request.query.get("q", "")
    return web.json_response({"q_length": len(q), "results": [p for p in PRODUCTS if q.lower() in p["name"].lower()]})


async def login(request: web.Request) -> web.Response:
    body = await request.json()
    if not body.get("username") or not body.get("password"):
        return _problem(400, "username and password required")
    return web.json_response({"access_token": make_jwt(str(body["username"])), "token_type": "Bearer"})


async def legacy_export(request: web.Request) -> web.Response:
    if request.query.get("api_key") not in API_KEYS:
        return _problem(403, "partner key required")
    return web.json_response({"users": [{"email": u["email"], "phone": u["phone"]} for u in USERS]})


async def legacy_catalog(request: web.Request) -> web.Response:
    # Deprecated in the spec, still served and still called by an old client: a zombie endpoint.
    return web.json_response({"products": [p["sku"] for p in PRODUCTS]})


async def internal_stats(request: web.Request) -> web.Response:
    return web.json_response({"users": len(USERS), "products": len(PRODUCTS), "uptime_s": time.monotonic()})


def build_demo_api() -> web.Application:
    app = web.Application()
    r = app.router
    r.add_get("/api/users", list_users)
    r.add_post("/api/users", create_user)
    r.add_get("/api/users/{user_id}", get_user)
    r.add_get("/api/orders", list_orders)
    r.add_get("/api/orders/{order_id}", get_order)
    r.add_post("/api/payments", create_payment)
    r.add_get("/api/payments/{payment_id}", get_payment)
    r.add_get("/api/products", list_products)
    r.add_get("/api/products/search", search_products)
    r.add_get("/api/products/{product_id}", get_product)
    r.add_post("/api/login", login)
    r.add_get("/api/legacy/export", legacy_export)
    r.add_get("/api/v1/catalog", legacy_catalog)
    r.add_get("/internal/stats", internal_stats)
    return app


def _op(
    op_id: str,
    summary: str,
    *,
    security: list[dict[str, list[str]]] | None = None,
    params: tuple[str, ...] = (),
    deprecated: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": {"200": {"description": "OK"}}}
    if security is not None:
        op["security"] = security
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
    if deprecated:
        op["deprecated"] = True
    return op


JWT_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
KEY_AUTH: list[dict[str, list[str]]] = [{"partnerKey": []}]
SUBSCRIPTION: list[dict[str, list[str]]] = [{"subscriptionKey": []}]

# The shop's published OpenAPI document. Like many real ones it is a little out of date: the internal
# stats route and the legacy export are not in it (shadow endpoints), and it declares a subscription
# key on GET /api/orders/{order_id}, which the code forgot to check (declared but not enforced).
DEMO_SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Demo shop", "version": "1.4.0"},
    "servers": [{"url": "/"}],
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "partnerKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "subscriptionKey": {"type": "apiKey", "in": "header", "name": "Ocp-Apim-Subscription-Key"},
        }
    },
    "paths": {
        "/api/users": {
            "get": _op("listUsers", "List users", security=JWT_AUTH),
            "post": _op("createUser", "Create a user", security=JWT_AUTH),
        },
        "/api/users/{user_id}": {"get": _op("getUser", "Get a user", security=JWT_AUTH, params=("user_id",))},
        "/api/orders": {"get": _op("listOrders", "List orders", security=SUBSCRIPTION)},
        "/api/orders/{order_id}": {
            "get": _op("getOrder", "Get an order", security=SUBSCRIPTION, params=("order_id",))
        },
        "/api/payments": {"post": _op("createPayment", "Create a payment", security=KEY_AUTH)},
        "/api/payments/{payment_id}": {
            "get": _op("getPayment", "Get a payment", security=KEY_AUTH, params=("payment_id",))
        },
        "/api/products": {"get": _op("listProducts", "List products", security=[])},
        "/api/products/search": {"get": _op("searchProducts", "Search products", security=[])},
        "/api/products/{product_id}": {
            "get": _op("getProduct", "Get a product", security=[], params=("product_id",))
        },
        "/api/login": {"post": _op("login", "Log in", security=[])},
        "/api/v1/catalog": {"get": _op("legacyCatalog", "Old catalog (deprecated)", security=[], deprecated=True)},
    },
}
