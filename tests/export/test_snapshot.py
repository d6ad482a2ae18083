"""``apiward export --snapshot`` delivers the full current state; the schema migrates from version 2."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from apiward.cli import main
from collector.store import Store, migrations
from collector.store import schema as t
from collector.store.alert_store import AlertPolicy
from collector.store.rows import build_rows
from collector.suppressions import AlertKey
from tests.collector.factories import alert, batch

ENV = {"APIWARD_ADMIN_TOKENS": "admin-token-0123456789a"}


async def _seed(url: str) -> set[str]:
    store = await Store.open(url)
    try:
        def suppress(key: AlertKey, now: object) -> str | None:
            return "lab" if key.client_ip == "10.0.0.1" else None

        store.alert_policy = AlertPolicy(suppress=suppress)
        await store.apply_batch(batch([], [alert(ip=f"198.51.100.{i}") for i in range(6)] + [alert(ip="10.0.0.1")]))
        items = (await store.list_alerts()).items
        await store.set_alert_status(items[0].id, "resolved", "admin", items[0].last_seen)
        return {a.id for a in items if a.status != "suppressed"}
    finally:
        await store.close()


def test_snapshot_sends_every_alert_except_suppressed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    expected = asyncio.run(_seed(url))
    ocsf, sa_file = tmp_path / "ocsf.jsonl", tmp_path / "sa.jsonl"
    exporters = tmp_path / "exporters.yaml"
    exporters.write_text(f"""
exporters:
  - {{name: lake, type: ocsf, file: "{ocsf}"}}
  - {{name: defender, type: security_alert, file: "{sa_file}", min_severity: high}}
""")
    code = main(["export", "--snapshot", "--exporter", "lake", "--database", url, "--exporters", str(exporters)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lake: sent 6, dead-lettered 0, still queued 0" in out
    records = [json.loads(line) for line in ocsf.read_text().splitlines()]
    assert {r["finding_info"]["uid"] for r in records} == expected and len(records) == 6
    assert {r["metadata"]["labels"][0] for r in records} == {"alert.snapshot"}
    assert sorted(r["status"] for r in records).count("Resolved") == 1
    assert not sa_file.exists()  # not selected

    assert main(["export", "--status", "--database", url, "--exporters", str(exporters)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["export", "--snapshot", "--exporter", "nope", "--database", url,
                 "--exporters", str(exporters)]) == 2
    assert "unknown exporter(s): nope" in capsys.readouterr().err
    assert main(["export", "--snapshot", "--database", url]) == 2
    assert "no exporters configured" in capsys.readouterr().err


async def test_a_version_2_database_migrates_to_version_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
    monkeypatch.setattr(migrations, "LATEST_VERSION", 2)
    old = await Store.open(url)
    async with old.engine.begin() as conn:
        await conn.execute(sa.text("DROP INDEX ix_alerts_group"))  # as a version-2 database had it
        await conn.execute(sa.text("DROP TABLE IF EXISTS outbox"))
        await conn.execute(sa.text("DROP TABLE IF EXISTS alert_history"))
        await conn.execute(sa.text("DROP TABLE IF EXISTS recommendation_state"))
        # The alert as version-2 code wrote it (that code wrote no history and no outbox rows).
        (row,) = build_rows(batch([], [alert()]), datetime.now(UTC)).alerts
        await conn.execute(t.alerts.insert().values(row))
    await old.close()
    monkeypatch.undo()
    new = await Store.open(url)
    try:
        async with new.engine.connect() as conn:
            assert await migrations.current_version(conn) == migrations.LATEST_VERSION  # 3, and any later
            names = await conn.run_sync(lambda c: {i["name"] for i in sa.inspect(c).get_indexes("alerts")})
        assert "ix_alerts_group" in names
        await new.apply_batch(batch([], [alert()]))
        (a,) = (await new.list_alerts()).items
        assert a.count == 2  # the old alert keeps its id and grows
    finally:
        await new.close()
