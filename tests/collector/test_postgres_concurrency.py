"""Two collectors (two Stores, two engines) on one PostgreSQL never lose a counter update."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from collector.store import Store
from tests.collector.conftest import _reset_pg
from tests.collector.factories import DataTypeSeen, ParamSeen, alert, batch, summary

PATHS = [f"/shared/{i}" for i in range(6)]


def _batch(n: int, sensor: str) -> object:
    # Every batch touches every endpoint, in a different order per collector, to provoke lock waits.
    order = PATHS if n % 2 else list(reversed(PATHS))
    return batch(
        [
            summary(
                path=p,
                requests=1,
                params=[ParamSeen(location="query", name="q")],
                data_types=[DataTypeSeen(type="email", location="response_body", status_class="2xx")],
            )
            for p in order
        ],
        [alert(path=PATHS[0])],
        sensor_id=sensor,
    )


async def test_two_stores_apply_concurrently_with_exact_totals(pg_database: str) -> None:
    await _reset_pg(pg_database)
    first = await Store.open(pg_database)
    second = await Store.open(pg_database)
    try:
        per_store = 30
        a = [_batch(i, "sensor-a") for i in range(per_store)]
        b = [_batch(i, "sensor-b") for i in range(per_store)]
        dup = a[0]  # the same batch arriving at both collectors is applied once
        results = await asyncio.gather(
            *(first.apply_batch(x) for x in a),  # type: ignore[arg-type]
            *(second.apply_batch(x) for x in b),  # type: ignore[arg-type]
            second.apply_batch(dup),  # type: ignore[arg-type]
        )
        assert results.count(True) == 2 * per_store
        total = 2 * per_store
        page = await first.list_endpoints(datetime.now(UTC), limit=100)
        assert {e.path: e.requests for e in page.items} == dict.fromkeys(PATHS, total)
        for e in page.items:
            assert e.auth_schemes == {"jwt": total}
            assert e.status_classes == {"2xx": total}
            assert [d.count for d in e.data_types] == [total]
            (param,) = await second.endpoint_params(e.id)
            assert param.count == total
        (grouped,) = (await second.list_alerts()).items
        assert grouped.count == total
        sensors = {s.id: s.batches for s in await first.list_sensors()}
        assert sensors == {"sensor-a": per_store, "sensor-b": per_store}
    finally:
        await first.close()
        await second.close()
        await _reset_pg(pg_database)
