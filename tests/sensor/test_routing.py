"""Table-driven tests for sensor.routing: inference, learned cardinality, spec matching, bounds."""

from __future__ import annotations

import random
import string
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from sensor.routing import (
    Router,
    base_path_of,
    classify_segment,
    join_base_path,
    normalise_path,
    query_param_names,
)
from tests.corpora import SPECS

PETSTORE3 = SPECS / "swagger-petstore" / "openapi.yaml"
PETSTORE_EXPANDED = SPECS / "oai-examples" / "petstore-expanded.yaml"
USPTO = SPECS / "oai-examples" / "uspto.yaml"


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        pytest.skip(f"spec corpus not available: {path}")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


# --------------------------------------------------------------------------------------------------
# segment types and inference


@pytest.mark.parametrize(
    ("segment", "kind"),
    [
        ("123", "id"),
        ("0", "id"),
        ("\u0663", None),  # Arabic-Indic digit: not an ASCII number
        ("550e8400-e29b-41d4-a716-446655440000", "uuid"),
        ("550E8400-E29B-41D4-A716-446655440000", "uuid"),
        ("550e8400-e29b-41d4-a716-44665544000g", "token"),  # not a UUID, still random-looking
        ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ulid"),
        ("d41d8cd98f00b204e9800998ecf8427e", "hash"),  # md5
        ("da39a3ee5e6b4b0d3255bfef95601890afd80709", "hash"),  # sha1
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "hash"),  # sha256
        ("deadbeef1", "hash"),
        ("5f2b9c1a", "hash"),
        ("deadbeef", None),  # hex letters only, short: a word
        ("abcdefabcdefabcdefabcdefabcdefab", "hash"),  # 32 hex chars, no digit
        ("2024-01-31", "date"),
        ("2024-01-31T10:20:30Z", "date"),
        ("2024-13-01", None),
        ("bob@example.com", "email"),
        ("first.last+tag@sub.example.org", "email"),
        ("@handle", None),
        ("a@b", None),
        ("1pI6La1JaQIHrJwyMAcSFw", "token"),
        ("Tu_jj2BMn7WbFaybuCXCVSOBLoJ8Ikcn", "token"),
        ("k3j4h5g6f7d8s9a0", "token"),
        ("productname2024v2final", None),
        ("release-notes-2024-q1", None),
        ("createWithList", None),
        ("findByStatus", None),
        ("users", None),
        ("v1", None),
        ("oauth2", None),
        ("abcdefghijklmnopqrstuvwxyz", None),  # long but no digits
        ("pay_1326869", "id"),  # typed object ids
        ("ch_3MmlLrLkdIwHu7ix", "token"),  # long and random: the token rule sees it first
        ("cus_NffrFeUfNV2Hib", "token"),
        ("order-55512", "id"),
        ("api-v2beta1", None),  # version-ish literals stay literal
        ("sku_123", None),
        ("read_only", None),
        ("x-api-key", None),
    ],
)
def test_classify_segment(segment: str, kind: str | None) -> None:
    assert classify_segment(segment) == kind


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/", "/"),
        ("", "/"),
        ("/users", "/users"),
        ("/users/", "/users"),
        ("//users///42//", "/users/{id}"),
        ("/users/42;jsessionid=ABC/orders", "/users/{id}/orders"),
        ("/./users/./42", "/users/{id}"),
        ("/users/42/orders/77", "/users/{id}/orders/{id2}"),
        ("/a/1/b/2/c/3", "/a/{id}/b/{id2}/c/{id3}"),
        ("/users/550e8400-e29b-41d4-a716-446655440000", "/users/{uuid}"),
        ("/users/550e8400-e29b-41d4-a716-446655440000/items/1", "/users/{uuid}/items/{id}"),
        ("/events/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/events/{ulid}"),
        ("/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/commits/{hash}"),
        ("/reports/2024-01-31/summary", "/reports/{date}/summary"),
        ("/reports/2024-01-31/2024-02-29", "/reports/{date}/{date2}"),
        ("/people/bob@example.com", "/people/{email}"),
        ("/reset/1pI6La1JaQIHrJwyMAcSFw", "/reset/{token}"),
        ("/v2/shops/12/products/productname2024v2final", "/v2/shops/{id}/products/productname2024v2final"),
        (
            "/orgs/5/repos/d41d8cd98f00b204e9800998ecf8427e/users/alice@example.org/2024-01-01",
            "/orgs/{id}/repos/{hash}/users/{email}/{date}",
        ),
        ("/x/" + "a" * 200, "/x/{param}"),  # over-long literal is data
        ("/" + "/".join(["s"] * 40), "/" + "/".join(["s"] * 31) + "/{rest}"),
    ],
)
def test_inference(path: str, template: str) -> None:
    route = Router("api").route("GET", path)
    assert route.template == template
    assert route.api == "api"
    assert route.from_spec is False
    assert route.name is None


TYPED_PATHS = [
    "/users/42",
    "/users/42/orders/7",
    "/users/550e8400-e29b-41d4-a716-446655440000/orders/7",
    "/files/d41d8cd98f00b204e9800998ecf8427e",
    "/reports/2024-01-31",
    "/people/bob@example.com/avatar",
    "/reset/1pI6La1JaQIHrJwyMAcSFw",
    "/events/01ARZ3NDEKTSV4RRFFQ69G5FAV/ack",
    "/",
    "/health",
]


def test_inference_is_deterministic_across_instances_and_orders() -> None:
    rng = random.Random(7)
    paths = TYPED_PATHS * 3 + [f"/users/{rng.randrange(10**9)}/orders/{rng.randrange(10**6)}" for _ in range(200)]
    shuffled = paths[:]
    rng.shuffle(shuffled)
    a, b = Router("api"), Router("api")
    templates_a = {p: a.route("GET", p).template for p in paths}
    templates_b = {p: b.route("GET", p).template for p in shuffled}
    assert templates_a == templates_b


def test_route_is_cached_and_identical() -> None:
    r = Router("api")
    assert r.route("GET", "/users/1") is r.route("POST", "/users/1")
    assert r.cached_paths == 1


# --------------------------------------------------------------------------------------------------
# learned cardinality


def test_cardinality_collapse() -> None:
    r = Router("api", cardinality_threshold=5)
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
    seen = [r.route("GET", f"/users/{n}/profile").template for n in names[:5]]
    assert seen == [f"/users/{n}/profile" for n in names[:5]]
    # The 6th distinct literal at that position crosses the threshold: the position collapses...
    assert r.route("GET", "/users/frank/profile").template == "/users/{param}/profile"
    assert r.collapses == 1
    # ...and stays collapsed for new and already-seen (even cached) values alike.
    assert r.route("GET", "/users/grace/profile").template == "/users/{param}/profile"
    assert r.route("GET", "/users/alice/profile").template == "/users/{param}/profile"
    # Other positions are unaffected; typed values keep their type.
    assert r.route("GET", "/users").template == "/users"
    assert r.route("GET", "/users/42/profile").template == "/users/{id}/profile"
    assert r.route("GET", "/teams/red").template == "/teams/red"


def test_cardinality_below_threshold_keeps_literals() -> None:
    r = Router("api", cardinality_threshold=50)
    for i in range(50):
        assert r.route("GET", f"/files/name{chr(97 + i % 26)}{chr(97 + i // 26)}").template.startswith("/files/name")
    assert r.collapses == 0


def test_collapse_converges_across_orders() -> None:
    names = [f"user{c}{d}" for c in string.ascii_lowercase for d in string.ascii_lowercase][:120]
    a, b = Router("api", cardinality_threshold=10), Router("api", cardinality_threshold=10)
    for n in names:
        a.route("GET", f"/u/{n}")
    for n in reversed(names):
        b.route("GET", f"/u/{n}")
    assert {a.route("GET", f"/u/{n}").template for n in names} == {"/u/{param}"}
    assert {b.route("GET", f"/u/{n}").template for n in names} == {"/u/{param}"}


def test_root_does_not_collapse_under_a_scan() -> None:
    r = Router("api", cardinality_threshold=5)
    assert r.route("GET", "/api/users/1").template == "/api/users/{id}"
    for i in range(20):
        r.route("GET", f"/probe{chr(97 + i)}")
    assert r.route("GET", "/api/users/1").template == "/api/users/{id}"
    assert r.route("GET", "/probez").template == "/{param}"


# --------------------------------------------------------------------------------------------------
# specs


@pytest.mark.parametrize(
    ("method", "path", "template", "name", "from_spec"),
    [
        ("GET", "/api/v3/pet/12", "/api/v3/pet/{petId}", "getPetById", True),
        ("DELETE", "/api/v3/pet/12", "/api/v3/pet/{petId}", "deletePet", True),
        ("post", "/api/v3/pet/12", "/api/v3/pet/{petId}", "updatePetWithForm", True),
        ("GET", "/api/v3/pet/findByStatus", "/api/v3/pet/findByStatus", "findPetsByStatus", True),
        ("GET", "/api/v3/pet/findByTags/", "/api/v3/pet/findByTags", "findPetsByTags", True),
        ("PUT", "/api/v3/pet", "/api/v3/pet", "updatePet", True),
        ("POST", "/api/v3/pet/7/uploadImage", "/api/v3/pet/{petId}/uploadImage", "uploadFile", True),
        ("GET", "/api/v3/user/login", "/api/v3/user/login", "loginUser", True),
        ("GET", "/api/v3/user/alice", "/api/v3/user/{username}", "getUserByName", True),
        ("HEAD", "/api/v3/store/inventory", "/api/v3/store/inventory", "getInventory", True),
        # a method the spec does not declare: the spec's template, but a shadow operation
        ("PATCH", "/api/v3/pet/12", "/api/v3/pet/{petId}", None, False),
        # a literal the spec declares only for GET: POST falls to the templated path that has it
        ("POST", "/api/v3/pet/findByStatus", "/api/v3/pet/{petId}", "updatePetWithForm", True),
        # not in the spec: inference (a shadow endpoint)
        ("GET", "/api/v3/pet/12/owners/3", "/api/v3/pet/{id}/owners/{id2}", None, False),
        ("GET", "/api/v3/admin", "/api/v3/admin", None, False),
        # without the base path nothing matches the spec
        ("GET", "/pet/12", "/pet/{id}", None, False),
    ],
)
def test_petstore3(method: str, path: str, template: str, name: str | None, from_spec: bool) -> None:
    r = Router("petstore")
    assert r.load_openapi(load(PETSTORE3)) == 19
    route = r.route(method, path)
    assert (route.template, route.name, route.from_spec, route.api) == (template, name, from_spec, "petstore")


@pytest.mark.parametrize(
    ("method", "path", "template", "name"),
    [
        ("GET", "/v2/pets", "/v2/pets", "findPets"),
        ("POST", "/v2/pets", "/v2/pets", "addPet"),
        ("GET", "/v2/pets/5", "/v2/pets/{id}", "find pet by id"),
        ("DELETE", "/v2/pets/5", "/v2/pets/{id}", "deletePet"),
    ],
)
def test_petstore_expanded(method: str, path: str, template: str, name: str) -> None:
    r = Router("default")
    assert r.load_openapi(load(PETSTORE_EXPANDED), api="pets") == 4
    route = r.route(method, path)
    assert (route.template, route.name, route.from_spec, route.api) == (template, name, True, "pets")
    assert r.route("GET", "/elsewhere/5").api == "default"


def test_literal_beats_parameter_regardless_of_order() -> None:
    doc = {
        "openapi": "3.0.0",
        "paths": {
            "/users/{id}": {"get": {"operationId": "getUser"}},
            "/users/me": {"get": {"operationId": "getMe"}},
            "/users/{id}/files/{name}.{ext}": {"get": {"operationId": "getFile"}},
            "/users/{id}/files/{fileId}": {"get": {"summary": "File by id"}},
        },
    }
    r = Router("api")
    assert r.load_openapi(doc) == 4
    assert r.route("GET", "/users/me").name == "getMe"
    assert r.route("GET", "/users/42").name == "getUser"
    assert r.route("GET", "/users/me/files/report.pdf").name == "getFile"
    assert r.route("GET", "/users/me/files/report.pdf").template == "/users/{id}/files/{name}.{ext}"
    assert r.route("GET", "/users/me/files/12").name == "File by id"


def test_swagger2_base_path_and_path_level_parameters() -> None:
    doc = {
        "swagger": "2.0",
        "basePath": "/api/v1/",
        "paths": {
            "/orders/{orderId}": {
                "parameters": [{"name": "orderId", "in": "path", "required": True, "type": "string"}],
                "get": {"operationId": "getOrder"},
                "x-internal": {"ignored": True},
            },
        },
    }
    r = Router("api")
    assert r.load_openapi(doc) == 1
    route = r.route("GET", "/api/v1/orders/abc")
    assert (route.template, route.name, route.from_spec) == ("/api/v1/orders/{orderId}", "getOrder", True)


@pytest.mark.parametrize(
    ("doc", "base"),
    [
        ({"openapi": "3.0.0", "servers": [{"url": "https://h.example/api/v3"}]}, "/api/v3"),
        ({"openapi": "3.0.0", "servers": [{"url": "https://h.example"}]}, "/"),
        ({"openapi": "3.0.0", "servers": [{"url": "/rel/"}]}, "/rel"),
        ({"openapi": "3.0.0", "servers": [{"url": "https://h.example/x?y=1"}]}, "/x"),
        (
            {
                "openapi": "3.1.0",
                "servers": [{"url": "{scheme}://h/{base}", "variables": {"base": {"default": "v9"}}}],
            },
            "/v9",
        ),
        ({"openapi": "3.0.0"}, "/"),
        ({"swagger": "2.0", "basePath": "/b"}, "/b"),
        ({"swagger": "2.0"}, "/"),
    ],
)
def test_base_path_of(doc: dict[str, Any], base: str) -> None:
    assert base_path_of(doc) == base


def test_uspto_root_and_server_variables() -> None:
    r = Router("uspto")
    assert r.load_openapi(load(USPTO)) == 3
    assert r.route("GET", "/ds-api/").name == "list-data-sets"
    assert r.route("GET", "/ds-api/oa_citations/v1/fields").template == "/ds-api/{dataset}/{version}/fields"


def test_join_and_normalise() -> None:
    assert join_base_path("/api/v3/", "/pet/{petId}") == "/api/v3/pet/{petId}"
    assert join_base_path("/", "/pet") == "/pet"
    assert join_base_path("/ds-api", "/") == "/ds-api"
    assert normalise_path("//a//b/") == "/a/b"


def test_load_openapi_rejects_non_documents() -> None:
    with pytest.raises(ValueError):
        Router("api").load_openapi({"openapi": "3.0.0"})


def test_spec_loaded_after_traffic_takes_over() -> None:
    r = Router("api")
    assert r.route("GET", "/users/me").template == "/users/me"
    r.load_openapi({"openapi": "3.0.0", "paths": {"/users/{userId}": {"get": {"operationId": "u"}}}})
    assert r.route("GET", "/users/me").template == "/users/{userId}"


# --------------------------------------------------------------------------------------------------
# memory bounds


def test_memory_bound_with_200k_random_paths() -> None:
    rng = random.Random(1234)
    alphabet = string.ascii_lowercase
    r = Router("api", max_templates=2000, cache_size=5000, cardinality_threshold=50)
    r.load_openapi(load(PETSTORE_EXPANDED))

    def word() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 10)))

    for i in range(200_000):
        depth = rng.randint(1, 6)
        segs = [word() if rng.random() < 0.7 else str(rng.randrange(10**6)) for _ in range(depth)]
        if i % 7 == 0:
            segs.append(str(uuid.UUID(int=rng.getrandbits(128))))
        r.route(rng.choice(["GET", "POST"]), "/" + "/".join(segs))
        assert r.learned_nodes <= 2000
    assert r.cached_paths <= 5000
    assert r.overflow > 0 or r.collapses > 0
    # Spec routes still answer correctly after the flood.
    assert r.route("GET", "/v2/pets/3").name == "find pet by id"


def test_overflow_collapses_into_param() -> None:
    r = Router("api", max_templates=4, cardinality_threshold=1000)
    r.route("GET", "/a/b/c")  # root + 3 nodes: the tree is full
    assert r.route("GET", "/a/b/c").template == "/a/b/c"
    assert r.route("GET", "/x/y").template == "/{param}/{param2}"
    assert r.overflow >= 1
    assert r.learned_nodes <= 4


# --------------------------------------------------------------------------------------------------
# query parameter names


@pytest.mark.parametrize(
    ("query", "limit", "names"),
    [
        ("", 64, ()),
        ("a=1&b=2&a=3", 64, ("a", "b")),
        ("flag&x=&=v&&y", 64, ("flag", "x", "y")),
        ("user%5Bname%5D=1&first+name=2", 64, ("user[name]", "first name")),
        ("%zz=1", 64, ("%zz",)),
        ("a=1&b=2&c=3", 2, ("a", "b")),
        ("&".join(f"p{i}=v" for i in range(10_000)), 64, tuple(f"p{i}" for i in range(64))),
        ("a=1&" * 100_000, 64, ("a",)),
    ],
)
def test_query_param_names(query: str, limit: int, names: tuple[str, ...]) -> None:
    assert query_param_names(query, limit) == names


def test_a_removed_spec_operation_stops_matching() -> None:
    router = Router("shop")
    doc = {"paths": {"/orders/{orderId}": {"get": {"operationId": "getOrder"}, "delete": {}},
                     "/files/{name}.{ext}": {"get": {}}}}
    assert router.load_openapi(doc) == 3
    assert router.has_operation("get", "/orders/{orderId}")
    assert router.remove_operation("DELETE", "/orders/{orderId}")
    assert not router.remove_operation("DELETE", "/orders/{orderId}")  # already gone
    assert not router.remove_operation("GET", "/nowhere/{x}")
    assert router.route("GET", "/orders/7").name == "getOrder"  # the path keeps its other operation
    assert router.route("DELETE", "/orders/7").from_spec is False
    assert router.remove_operation("GET", "/orders/{orderId}")
    route = router.route("GET", "/orders/7")  # no operation left on the path: inference again
    assert (route.template, route.from_spec) == ("/orders/{id}", False)
    assert router.remove_operation("GET", "/files/{name}.{ext}")
    assert router.spec_operations == 0
