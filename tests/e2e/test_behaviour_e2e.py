"""Behavioural alerts end to end: real sensor in front of the demo API, real collector.

The bundled thresholds (one hour / 1,000 requests of learning) are lowered through a policy directory,
exactly as an operator would do with ``--policies``; everything else is the shipped policy.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import yaml

from apiward.demo_api import build_demo_api, make_jwt
from policies import __file__ as policies_init
from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.e2e.conftest import INGEST, read_json, serve, wait_for

TOR_EXIT = "192.0.2.10"


def policy_dir(tmp_path: Path) -> Path:
    bundled = yaml.safe_load((Path(policies_init).parent / "behaviour.yaml").read_text())
    bundled["learning"] = {"seconds": 0, "requests": 20}
    bundled["auth"]["bruteforce_ip_failures"] = 10
    out = tmp_path / "policies"
    (out / "iplists").mkdir(parents=True)
    (out / "iplists" / "tor-exit-nodes.txt").write_text(f"{TOR_EXIT}\n")
    (out / "iplists" / "suspicious-ips.txt").write_text("203.0.113.0/24\n")
    (out / "behaviour.yaml").write_text(yaml.safe_dump(bundled))
    return out


def unsigned_jwt(sub: str) -> str:
    def seg(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'none', 'typ': 'JWT'})}.{seg({'sub': sub, 'exp': 4102444800})}."


async def test_behavioural_alerts_reach_the_collector(tmp_path: Path, collector: str) -> None:
    api_runner, api_port = await serve(build_demo_api())
    runtime = SensorRuntime(SensorConfig(
        upstream=f"http://127.0.0.1:{api_port}", listen="127.0.0.1:0", collector=collector, ingest_token=INGEST,
        window=1.0, trusted_proxies=["127.0.0.1/32"], api_name="shop", state_dir=str(tmp_path / "sensor"),
        policies=str(policy_dir(tmp_path)),
    ).validate())
    await runtime.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime.listen_port}") as client:

            async def get(path: str, **kw: object) -> int:
                async with client.get(path, **kw) as resp:  # type: ignore[arg-type]
                    await resp.read()
                    return resp.status

            user = {"Authorization": f"Bearer {make_jwt('user-1')}"}
            for i in range(30):  # learning: ordinary traffic from several clients
                ip = {"X-Forwarded-For": f"81.2.69.{10 + i % 5}"}
                assert await get("/api/products", params={"limit": "5"}, headers=ip) == 200
                assert await get("/api/users/1", headers={**ip, **user}) == 200
                assert await get("/api/users", headers={**ip, **user}) == 200
            # attacks
            assert await get("/api/products", headers={"User-Agent": "Nikto/2.1.6"}) == 200
            assert await get("/api/products", params={"limit": "5"}, headers={"X-Forwarded-For": TOR_EXIT}) == 200
            assert await get("/api/users/1", headers={"Authorization": f"Bearer {unsigned_jwt('admin')}"}) == 200
            assert await get("/api/products", params={"limit": "5", "debug": "true"}) == 200
            for i in range(12):  # password guessing: credentials tried, 401 answered
                basic = base64.b64encode(f"alice:guess-{i}".encode()).decode()
                headers = {"X-Forwarded-For": "89.160.20.112", "Authorization": f"Basic {basic}"}
                assert await get("/api/users", headers=headers) == 401
    finally:
        await runtime.stop()  # closes the windows and flushes every alert group
        await api_runner.cleanup()

    expected = {
        "API_AccessFromSuspiciousUserAgent",
        "API_AccessFromTorExitNode",
        "API_BrokenAuthentication",
        "API_UnseenParam",
        "API_BruteForce",
    }

    async def all_there() -> bool:
        types = {a["type"] for a in (await read_json(collector, "/api/v1/alerts"))["items"]}
        return expected <= types

    ok = await wait_for(all_there, timeout=10)
    got = {a["type"] for a in (await read_json(collector, "/api/v1/alerts"))["items"]}
    assert ok, f"missing {expected - got}, got {got}"
    alerts = {a["type"]: a for a in (await read_json(collector, "/api/v1/alerts"))["items"]}
    assert alerts["API_AccessFromTorExitNode"]["client"]["ip"] == TOR_EXIT
    assert alerts["API_BruteForce"]["client"]["ip"] == "89.160.20.112"
    assert alerts["API_BrokenAuthentication"]["severity"] == "high"
    unseen = alerts["API_UnseenParam"]
    assert (unseen["endpoint"]["method"], unseen["endpoint"]["path"]) == ("GET", "/api/products")
    for alert in alerts.values():  # explainable: every alert says why, and carries its mappings
        assert alert["evidence"] and alert["mitre_tactics"] and alert["remediation"]
    text = json.dumps(list(alerts.values()))
    assert "user-1" not in text and "admin" not in text  # principals only as keyed hashes


