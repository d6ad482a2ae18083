"""``apiward export``: the snapshot, outbox status and dead-letter re-queue, against the database."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime

from collector import recommendations as recs
from collector.export.config import ExportConfigError
from collector.export.snapshot import drain, enqueue_snapshot
from collector.settings import CollectorSettings, ConfigError
from collector.store import Store
from collector.store import outbox_store as ob


def run(args: argparse.Namespace, settings: CollectorSettings) -> int:
    try:
        exporters = settings.exporters.select(args.exporter)
    except ExportConfigError as exc:
        raise ConfigError(str(exc)) from None
    if not exporters and not args.status:
        raise ConfigError("no exporters configured: pass --exporters FILE or set APIWARD_EXPORTERS_FILE")
    return asyncio.run(_run(args, settings, [e.name for e in exporters]))


async def _run(args: argparse.Namespace, settings: CollectorSettings, names: list[str]) -> int:
    store = await Store.open(settings.database_url)
    try:
        if args.status:
            counts = await ob.counts(store)
            print(json.dumps([{"exporter": e, "state": s, "rows": n} for (e, s), n in sorted(counts.items())]))
            return 0
        if args.requeue_dead:
            total = sum([await ob.requeue_dead(store, name, datetime.now(UTC)) for name in names])
            print(f"re-queued {total} dead-lettered rows")
            return 0
        selected = settings.exporters.select(names)
        loaded = recs.load(settings.recommendations_file or recs.DEFAULT_PATH)
        queued = await enqueue_snapshot(store, selected, loaded)
        print(f"queued {queued} snapshot records for {', '.join(names)}")
        if args.no_wait:
            return 0
        result = await drain(store, selected, args.timeout)
        for name, totals in result.items():
            print(f"{name}: sent {totals['sent']}, dead-lettered {totals['dead_lettered']}, "
                  f"still queued {totals['queued']}")
        return 0 if all(c["queued"] == 0 and c["dead_lettered"] == 0 for c in result.values()) else 1
    finally:
        await store.close()


__all__ = ["run"]
