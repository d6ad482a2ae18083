"""The Envoy and API Management recipes: structure, and their contract with the sensor.

There is no Envoy nor APIM here, so these check what can be checked offline: the Envoy bootstrap's
mirror wiring, and that the APIM policy builds exactly the fields of ``ExchangeRecord`` and that such a
record is accepted by a real mirror listener.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import yaml

from sensor.config import SensorConfig
from sensor.mirror import RECORDS_PATH, ExchangeRecord, start_mirror
from tests.conftest import free_port
from tests.deploy.conftest import REPO
from tests.sensor.proxy_helpers import RecordingSink

EXAMPLES = REPO / "examples"


def test_envoy_recipe_mirrors_every_route_to_the_sensor_cluster() -> None:
    doc = yaml.safe_load((EXAMPLES / "envoy" / "envoy-mirror.yaml").read_text())
    clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
    (listener,) = doc["static_resources"]["listeners"]
    (hcm,) = listener["filter_chains"][0]["filters"]
    config = hcm["typed_config"]
    assert config["use_remote_address"] is True  # X-Forwarded-For carries the real client
    routes = [r for vh in config["route_config"]["virtual_hosts"] for r in vh["routes"]]
    assert routes
    for route in routes:
        (policy,) = route["route"]["request_mirror_policies"]
        assert policy["cluster"] in clusters and route["route"]["cluster"] in clusters
        fraction = policy["runtime_fraction"]["default_value"]
        assert fraction == {"numerator": 100, "denominator": "HUNDRED"}
    sensor = clusters["apiward_sensor"]
    port = sensor["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert port["port_value"] == 8081
    assert config["http_filters"][-1]["name"] == "envoy.filters.http.router"


def _apim_policy() -> ET.Element:
    return ET.parse(EXAMPLES / "apim" / "apiward-policy.xml").getroot()  # noqa: S314 (our own file)


def test_apim_policy_posts_an_exchange_record_from_outbound() -> None:
    root = _apim_policy()
    assert root.tag == "policies"
    assert [child.tag for child in root] == ["inbound", "backend", "outbound", "on-error"]
    send = root.find("outbound/send-one-way-request")
    assert send is not None and send.get("mode") == "new"
    assert send.findtext("set-method") == "POST"
    assert (send.findtext("set-url") or "").strip() == "{{apiward-sensor-url}}"
    header = send.find("set-header[@name='Content-Type']")
    assert header is not None and header.findtext("value") == "application/json"
    body = send.findtext("set-body") or ""
    names = re.findall(r'new JProperty\("([a-z_]+)"', body)
    record_fields = set(ExchangeRecord.__struct_fields__)
    # every property is a field of the record (the endpoint rejects unknown fields) ...
    assert set(names) <= record_fields, set(names) - record_fields
    # ... and the ones analysis needs are all there
    assert {"method", "url", "status", "request_headers", "response_headers", "request_body", "response_body",
            "client_ip", "started_at", "duration_ms", "request_id"} <= set(names)
    # the request body is read in inbound (it is gone by outbound), capped, and preserved for the backend
    inbound_var = root.find("inbound/set-variable[@name='apiwardRequestBody']")
    assert inbound_var is not None and "preserveContent: true" in (inbound_var.get("value") or "")
    assert "8192" in (inbound_var.get("value") or "") and "8192" in body


def apim_like_record() -> dict[str, Any]:
    """What the policy's expression produces for one call (APIM header values are string arrays)."""
    now = datetime.now(UTC)
    return {
        "method": "POST",
        "url": "https://contoso.azure-api.net/orders/v1/orders/42/items?expand=sku",
        "status": 201,
        "request_headers": {"Authorization": ["Bearer abc.def.ghi"], "Ocp-Apim-Subscription-Key": ["k" * 32],
                            "Content-Type": ["application/json"]},
        "request_body": '{"sku": "A-1", "qty": 2}',
        "response_headers": {"Content-Type": ["application/json; charset=utf-8"]},
        "response_body": '{"id": 7}',
        "client_ip": "81.2.69.160",
        "started_at": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "duration_ms": 23.71,
        "request_id": "5f1c2f3e-8a4b-4c1d-9e2f-0123456789ab",
    }


async def test_apim_shaped_record_is_accepted_by_the_mirror_listener() -> None:
    record = apim_like_record()
    msgspec.json.decode(msgspec.json.encode(record), type=ExchangeRecord)  # the strict schema accepts it
    sink = RecordingSink()
    port = free_port()
    runner = await start_mirror(SensorConfig(mode="mirror"), sink, "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as client, client.post(
            f"http://127.0.0.1:{port}{RECORDS_PATH}", json=record
        ) as resp:
            assert resp.status == 202, await resp.text()
            assert (await resp.json()) == {"accepted": 1}
        (ex,) = await sink.wait_for(1)
    finally:
        await runner.cleanup()
    assert ex.method == "POST" and ex.path == "/orders/v1/orders/42/items" and ex.query_string == "expand=sku"
    assert ex.status == 201 and ex.client_ip_hint == "81.2.69.160" and ex.listener_scheme == "https"
    assert ex.request_headers["Host"] == "contoso.azure-api.net"
    assert ex.request_id == record["request_id"] and ex.request_body == record["request_body"].encode()
