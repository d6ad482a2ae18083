"""Spec sync end to end: a real collector app imports a spec; the sensor side pulls it into a Router."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.test_utils import TestClient

from collector.app import create_app
from collector.settings import CollectorSettings, Role, Token
from collector.store import Store
from sensor.routing import Router
from sensor.spec_sync import SpecSync, operations_document

PETSTORE = Path("/work/shared/corpora/specs/swagger-petstore/openapi.yaml")
INGEST, ADMIN = "ingest-token-0123456789", "admin-token-0123456789a"


def test_operations_document_skips_bad_entries() -> None:
    doc = operations_document([
        {"method": "GET", "path": "/a/{id}", "name": "getA"},
        {"method": "POST", "path": "/a/{id}", "name": None},
        {"method": "GET", "path": "no-slash"},
        {"path": "/b"},
    ])
    assert doc["paths"] == {"/a/{id}": {"get": {"operationId": "getA"}, "post": {}}}


async def test_sensor_pulls_templates_from_a_real_collector(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = CollectorSettings(
        tokens=[Token(Role.INGEST, INGEST, "ingest"), Token(Role.ADMIN, ADMIN, "admin")],
        max_body_bytes=1024 * 1024, max_decompressed_bytes=1024 * 1024, sweep_seconds=0,
    ).validate()
    store = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, store))
        base = str(client.make_url("/")).rstrip("/")
        router = Router("pets")
        sync = SpecSync(base, INGEST, "pets", lambda: router, interval=0.05)
        async with aiohttp.ClientSession() as session:
            assert await sync.poll(session)  # nothing imported yet: loads nothing
            assert router.route("GET", "/api/v3/pet/12").template == "/api/v3/pet/{id}"  # inferred
            resp = await client.post("/api/v1/specs", params={"api": "pets"}, data=PETSTORE.read_bytes(),
                                     headers={"Authorization": f"Bearer {ADMIN}"})
            assert resp.status == 201
            assert await sync.poll(session)
            assert sync.loaded_operations == 19
            route = router.route("GET", "/api/v3/pet/12")
            assert (route.template, route.name, route.from_spec) == ("/api/v3/pet/{petId}", "getPetById", True)
            assert not await sync.poll(session)  # unchanged: 304
            # The spec is re-imported without the pet operations: they leave the router, the rest stays.
            reduced = yaml.safe_load(PETSTORE.read_bytes())
            reduced["paths"] = {p: v for p, v in reduced["paths"].items() if not p.startswith("/pet")}
            resp = await client.post("/api/v1/specs", params={"api": "pets"}, data=json.dumps(reduced).encode(),
                                     headers={"Authorization": f"Bearer {ADMIN}"})
            assert resp.status == 201
            assert await sync.poll(session)
            assert sync.removed_operations == 19 - sync.loaded_operations > 0
            assert router.route("GET", "/api/v3/pet/12").from_spec is False  # inferred again
            assert router.route("GET", "/api/v3/store/inventory").from_spec is True
        # The background loop runs and stops cleanly.
        sync.start()
        await sync.stop()
        assert sync.errors == 0
        bad = SpecSync(base, "wrong-token-000000000000", "pets", lambda: router, interval=0.01)
        async with aiohttp.ClientSession() as session:
            try:
                await bad.poll(session)
                raise AssertionError("expected a failure")
            except RuntimeError as exc:
                assert "401" in str(exc)
    finally:
        await store.close()
