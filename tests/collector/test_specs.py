"""OpenAPI import: parsing (pure) and storing (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector import inventory, posture_jobs
from collector.specs import SpecError, parse_spec, read_source
from collector.store import EndpointFilter, Store
from collector.store import posture_store as ps
from collector.store import schema as t

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "specs"
if not CORPUS.exists():
    CORPUS = Path("/work/shared/corpora/specs")
PETSTORE3 = CORPUS / "swagger-petstore" / "openapi.yaml"
OPENAI = CORPUS / "openai" / "openapi.yaml"
STRIPE = CORPUS / "stripe" / "spec3.2023-09-12.yaml"
XKCD = CORPUS / "apis-guru" / "xkcd.com" / "1.0.0" / "openapi.yaml"
PETSTORE30 = CORPUS / "oai-examples" / "petstore.yaml"

SWAGGER2 = {
    "swagger": "2.0",
    "info": {"title": "Legacy shop", "version": "1"},
    "host": "shop.example.com",
    "basePath": "/api",
    "schemes": ["https"],
    "securityDefinitions": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
    "security": [{"key": []}],
    "parameters": {"page": {"name": "page", "in": "query", "type": "integer"}},
    "definitions": {"Order": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}},
    "paths": {
        "/orders": {
            "get": {"operationId": "listOrders", "parameters": [{"$ref": "#/parameters/page"}]},
            "post": {
                "summary": "Create an order",
                "parameters": [{"name": "body", "in": "body", "schema": {"$ref": "#/definitions/Order"}}],
            },
        },
        "/orders/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
            "get": {"operationId": "getOrder"},
            "delete": {"operationId": "cancelOrder", "deprecated": True},
        },
        "/status": {"get": {"operationId": "status", "security": []}},
    },
}


def _parse(path: Path, api: str | None = None):  # type: ignore[no-untyped-def]
    return parse_spec(*read_source(str(path)), api)


def test_openapi_30_petstore() -> None:
    spec = _parse(PETSTORE3)
    assert (spec.api, spec.spec_format, spec.base_path) == ("petstore3.swagger.io", "openapi 3.0.4", "/api/v3")
    ops = {(o.method, o.path): o for o in spec.operations}
    get_pet = ops[("GET", "/api/v3/pet/{petId}")]
    assert get_pet.name == "getPetById"
    assert get_pet.requires_auth
    assert ("path", "petId") in get_pet.params
    update = ops[("PUT", "/api/v3/pet")]
    assert update.body_declared and ("body", "photoUrls") in update.params


def test_openapi_31_openai_deprecated_and_security() -> None:
    spec = _parse(OPENAI, "openai")
    assert spec.spec_format == "openapi 3.1.0" and spec.base_path == "/v1"
    assert len(spec.operations) > 200
    assert any(o.deprecated for o in spec.operations)
    assert all(o.requires_auth for o in spec.operations if o.security)  # ApiKeyAuth or AdminApiKeyAuth


def test_swagger_20_written_here() -> None:
    spec = parse_spec(json.dumps(SWAGGER2).encode(), "legacy.json")
    assert (spec.api, spec.base_url, spec.spec_format) == (
        "shop.example.com", "https://shop.example.com/api", "swagger 2.0"
    )
    ops = {(o.method, o.path): o for o in spec.operations}
    assert ops[("GET", "/api/orders")].params == [("query", "page")]
    create = ops[("POST", "/api/orders")]
    assert create.name == "Create an order"  # no operationId: the summary names it
    assert create.body_declared and set(create.params) == {("body", "sku"), ("body", "qty")}
    assert ops[("DELETE", "/api/orders/{id}")].deprecated
    assert ops[("GET", "/api/orders/{id}")].params == [("path", "id")]
    assert ops[("GET", "/api/orders/{id}")].requires_auth
    assert not ops[("GET", "/api/status")].requires_auth  # security: [] opens it


def test_apim_wrapper_and_yaml() -> None:
    inner = PETSTORE30.read_text()
    wrapped = {"properties": {"format": "openapi", "value": inner, "displayName": "Pets", "path": "pets"}}
    spec = parse_spec(json.dumps(wrapped).encode(), "apim-export.json", "pets-apim")
    assert spec.api == "pets-apim" and {o.name for o in spec.operations} == {"listPets", "createPets", "showPetById"}
    arm = {"resources": [{"type": "Microsoft.ApiManagement/service/apis",
                          "properties": {"format": "swagger-json", "value": json.dumps(SWAGGER2)}}]}
    assert len(parse_spec(json.dumps(arm).encode(), "arm.json").operations) == 5
    bad = {"properties": {"format": "wsdl", "value": "<xml/>"}}
    with pytest.raises(SpecError) as err:
        parse_spec(json.dumps(bad).encode(), "apim.json")
    assert err.value.pointer == "/properties/format"


@pytest.mark.parametrize(
    ("doc", "pointer", "words"),
    [
        ({"openapi": "4.0.0", "paths": {}}, "/openapi", "unsupported OpenAPI version"),
        ({"swagger": "1.2", "paths": {}}, "/swagger", "unsupported Swagger"),
        ({"info": {}}, "/openapi", "missing"),
        ({"openapi": "3.0.0", "paths": []}, "/paths", "not an object"),
        ({"openapi": "3.0.0", "paths": {"pets": {}}}, "/paths/pets", "start with '/'"),
        ({"openapi": "3.0.0", "paths": {"/a/b": {"get": {"deprecated": "yes"}}}},
         "/paths/~1a~1b/get/deprecated", "true or false"),
        ({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "#/components/parameters/nope"}]}}}},
         "/paths/~1a/get/parameters/0/$ref", "does not resolve"),
        ({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "body2"}]}}}},
         "/paths/~1a/get/parameters/0/in", "unknown parameter location"),
    ],
)
def test_errors_name_file_pointer_and_problem(doc: dict[str, object], pointer: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(json.dumps(doc).encode(), "broken.json")
    assert err.value.source == "broken.json" and err.value.pointer == pointer and words in err.value.problem
    assert str(err.value).startswith(f"broken.json: {pointer}: ")


def test_yaml_error_has_a_line() -> None:
    with pytest.raises(SpecError, match=r"invalid YAML at line 3, column 1"):
        parse_spec(b"openapi: 3.0.0\npaths: {/a: [\n", "bad.yaml")


async def test_import_makes_named_awaiting_endpoints(store: Store) -> None:
    now = datetime.now(UTC)
    result = await ps.import_spec(store, _parse(PETSTORE3, "petstore"), now)
    assert (result.operations, result.new_endpoints) == (19, 19)
    page = await store.list_endpoints(now, EndpointFilter(api="petstore"), limit=100)
    views = {(e.method, e.path): inventory.endpoint_view(e, now) for e in page.items}
    pet = views[("GET", "/api/v3/pet/{petId}")]
    assert (pet["name"], pet["status"], pet["from_spec"], pet["shadow"]) == ("getPetById", "awaiting_data", True, False)
    assert all(v["status"] == "awaiting_data" for v in views.values())
    # Re-import is idempotent and keeps one spec row.
    again = await ps.import_spec(store, _parse(PETSTORE3, "petstore"), now)
    assert again.new_endpoints == 0 and again.etag == result.etag
    templates = await ps.spec_templates(store)
    assert len(templates) == 1 and len(templates[0]["operations"]) == 19


async def test_large_spec_imports_in_reasonable_time(store: Store) -> None:
    started = time.monotonic()
    spec = _parse(STRIPE, "stripe")
    result = await ps.import_spec(store, spec, datetime.now(UTC))
    await posture_jobs.refresh(store, await ps.endpoint_ids(store, result.api_id))
    assert result.operations == 468 or result.operations > 400
    assert time.monotonic() - started < 30
    async with store.engine.connect() as conn:
        n = await conn.scalar(sa.select(sa.func.count()).select_from(t.endpoint_spec))
    assert n == result.operations


async def test_xkcd_and_petstore30(store: Store) -> None:
    now = datetime.now(UTC)
    await ps.import_spec(store, _parse(XKCD), now)
    await ps.import_spec(store, _parse(PETSTORE30), now)
    names = {e.name for e in (await store.list_endpoints(now, limit=100)).items}
    assert {"listPets", "createPets", "showPetById"} <= names
