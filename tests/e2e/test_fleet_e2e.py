"""The fleet view end to end: two real sensor replicas in front of one backend, one real collector.

Traffic is split over the replicas the way a load balancer would split it: a flood and a distributed
enumeration that each replica sees only half of, under every replica's own floor, show up at the
collector as ONE alert each, raised by the fleet view (evidence ``fleet: true``). Thresholds and
windows are lowered through a policy file given to both the sensors (``--policies``) and the
collector (``--behaviour-policy``), exactly as an operator would; the collector's fleet job runs every
0.2 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from collector.app import create_app
from policies import __file__ as policies_init
from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.e2e.conftest import INGEST, CountingBackend, collector_settings, read_json, serve, wait_for

BUCKET = 2.0  # sensor summary window = rate bucket = the fleet's population window
DISTINCT = 4.0  # distinct window: two buckets
SECRET = "fleet-e2e-principal-secret-0123456789"  # shared by the replicas: their value hashes match


def policy_dir(tmp_path: Path) -> Path:
    bundled = yaml.safe_load((Path(policies_init).parent / "behaviour.yaml").read_text())
    bundled["learning"] = {"seconds": 0, "requests": 20}  # the replicas' own models are live...
    bundled["rate"].update(bucket_seconds=BUCKET, min_population=30)  # ...with floors each share stays under
    bundled["distinct"].update(window_seconds=DISTINCT, distributed_min=40)
    out = tmp_path / "policies"
    (out / "iplists").mkdir(parents=True)
    (out / "iplists" / "tor-exit-nodes.txt").write_text("")
    (out / "iplists" / "suspicious-ips.txt").write_text("")
    (out / "behaviour.yaml").write_text(yaml.safe_dump(bundled))
    return out


async def until_next(width: float, after: float = 0.05) -> None:
    now = time.time()
    await asyncio.sleep(width - now % width + after)


async def test_two_replicas_behave_like_one(tmp_path: Path) -> None:
    policies = policy_dir(tmp_path)
    settings = dataclasses.replace(
        collector_settings(tmp_path / "collector.db"),
        fleet_seconds=0.2,
        behaviour_policy_file=str(policies / "behaviour.yaml"),
    )
    collector_runner, collector_port = await serve(create_app(settings))
    collector = f"http://127.0.0.1:{collector_port}"
    backend = CountingBackend()
    backend_runner, backend_port = await serve(backend.app)
    replicas = [
        SensorRuntime(SensorConfig(
            upstream=f"http://127.0.0.1:{backend_port}", listen="127.0.0.1:0", collector=collector,
            ingest_token=INGEST, window=BUCKET, trusted_proxies=["127.0.0.1/32"], api_name="e2e",
            state_dir=str(tmp_path / f"sensor-{n}"), policies=str(policies), principal_secret=SECRET,
        ).validate())
        for n in range(2)
    ]  # fmt: skip
    for r in replicas:
        await r.start()
    sessions = [aiohttp.ClientSession(f"http://127.0.0.1:{r.listen_port}") for r in replicas]
    auth = {"Authorization": "Bearer e2e-user-token"}

    async def get(n: int, path: str, ip: str) -> None:
        async with sessions[n % 2].get(path, headers={**auth, "X-Forwarded-For": ip}) as resp:
            await resp.read()
            assert resp.status == 200, path

    async def split(paths: list[str], ip: str = "81.2.69.10") -> None:
        """Round robin over the two replicas, concurrently."""
        await asyncio.gather(*(get(n, p, ip) for n, p in enumerate(paths)))

    try:
        # W0 (partial distinct window): each replica's sketch of /items/{id} exists from its 50th request.
        await split([f"/items/{1 + i % 5}" for i in range(110)] + ["/public/catalog"] * 4)
        await until_next(DISTINCT)
        # W1: ordinary traffic: the same 5 items, a few catalogue calls per bucket on each replica.
        for bucket in range(int(DISTINCT / BUCKET)):
            if bucket:
                await until_next(BUCKET)
            await split([f"/items/{1 + i % 5}" for i in range(10)] + ["/public/catalog"] * 4)
        await until_next(DISTINCT)
        # W2: a flood of the catalogue (25 per replica: under its floor of 30; 50 for the fleet), then an
        # enumeration of 50 new ids (25 per replica: under its floor of 40; 50 distinct for the fleet).
        await split(["/public/catalog"] * 50, ip="89.160.20.112")
        await split([f"/items/{5000 + i}" for i in range(50)], ip="89.160.20.113")

        async def fleet_alerts() -> dict[str, Any]:
            items = (await read_json(collector, "/api/v1/alerts", {"limit": "100"}))["items"]
            return {a["type"]: a for a in items if a["evidence"].get("fleet") is True}

        wanted = {"API_PopulationSpikeInAPITraffic", "API_DistributedParameterEnumeration"}

        async def raised() -> bool:
            return wanted <= set(await fleet_alerts())

        assert await wait_for(raised, timeout=8), await read_json(collector, "/api/v1/alerts")
    finally:
        for s in sessions:
            await s.close()
        for r in replicas:
            await r.stop()
        await backend_runner.cleanup()
    try:
        await asyncio.sleep(0.5)  # a last fleet pass over the windows the stop flushed
        items = (await read_json(collector, "/api/v1/alerts", {"limit": "100"}))["items"]
        by_key = {(a["type"], a["endpoint"]["path"]): a for a in items}
        spike = by_key[("API_PopulationSpikeInAPITraffic", "/public/catalog")]
        assert spike["evidence"]["fleet"] is True and spike["evidence"]["sensors"] == 2
        assert spike["evidence"]["status_class"] == "2xx" and spike["evidence"]["observed"] >= 50
        enum = by_key[("API_DistributedParameterEnumeration", "/items/{id}")]
        assert enum["evidence"]["fleet"] is True and enum["evidence"]["sensors"] == 2
        assert (enum["evidence"]["location"], enum["evidence"]["param"]) == ("path", "{id}")
        assert enum["evidence"]["observed"] > 40
        # One alert each, raised once, by the fleet: no replica fired on its own share (its hits
        # would have grouped into the same alert and raised the count).
        assert spike["count"] == 1 and enum["count"] == 1
        assert spike["client"]["ip"] is None and enum["client"]["ip"] is None
    finally:
        await collector_runner.cleanup()
