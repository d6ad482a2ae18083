"""``apiward serve`` (the collector) and the readers ``inventory``, ``endpoints``, ``alerts``.

Every command sets ``func(args) -> int``. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from collector.client import ClientError, CollectorClient
from collector.render import data_types_summary, short_time, table
from collector.settings import ConfigError, load_settings

DEFAULT_COLLECTOR = "http://127.0.0.1:8000"
EXIT_CONFIG = 2
EXIT_ERROR = 1


def _fail(command: str, message: str, code: int = EXIT_ERROR) -> int:
    first = (message.strip().splitlines() or ["error"])[0]
    print(f"apiward {command}: error: {first}", file=sys.stderr)
    return code


# --- serve ---------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            listen=args.listen,
            database=args.database,
            tokens_file=args.tokens_file,
            insecure_dev=args.insecure_dev,
            log_level=args.log_level,
            retention_days=args.retention_days,
            exporters_file=args.exporters,
            suppressions_file=args.suppressions,
            alert_group_window=args.alert_group_window,
            fleet_seconds=args.fleet_interval,
            behaviour_policy_file=args.behaviour_policy,
        )
    except ConfigError as exc:
        return _fail("serve", str(exc), EXIT_CONFIG)
    from apiward.logs import configure_logging
    from collector.server import serve

    configure_logging(settings.log_level, component="collector")
    try:
        serve(settings)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # e.g. the address is in use, or the database host refuses
        return _fail("serve", f"cannot start the collector: {exc}")
    except Exception as exc:  # the database does not exist, a migration failed, ...
        return _fail("serve", f"cannot start the collector: {type(exc).__name__}: {exc}")
    return 0


# --- export --------------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    from collector.export.cli import run

    try:
        settings = load_settings(database=args.database, exporters_file=args.exporters, insecure_dev=True)
    except ConfigError as exc:
        return _fail("export", str(exc), EXIT_CONFIG)
    try:
        return run(args, settings)
    except ConfigError as exc:
        return _fail("export", str(exc), EXIT_CONFIG)
    except BrokenPipeError:
        raise  # the reader of our output went away: apiward.console ends quietly
    except Exception as exc:  # the database is away, a migration is missing, ...
        return _fail("export", f"{type(exc).__name__}: {exc}")


# --- readers -------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> CollectorClient:
    return CollectorClient(args.collector, os.environ.get("APIWARD_TOKEN") or None)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _inventory(args: argparse.Namespace) -> int:
    try:
        inv = _client(args).get("/api/v1/inventory")
    except ClientError as exc:
        return _fail("inventory", str(exc))
    if args.json:
        _print_json(inv)
        return 0
    counts = inv["counts"]
    print(table(["count", "value"], [[k.replace("_", " "), v] for k, v in counts.items()]))
    print()
    rows = [
        [
            s["name"], s["id"], s["mode"], s["version"], short_time(s["last_batch_at"]), s["batches"],
            s["stats"]["dropped_batches"], s["stats"]["dropped_requests"], s["stats"]["spooled_batches"],
        ]
        for s in inv["sensors"]
    ]
    print(table(
        ["sensor", "id", "mode", "version", "last batch", "batches", "dropped batches", "dropped requests",
         "spooled"],
        rows,
    ))
    return 0


def _endpoints(args: argparse.Namespace) -> int:
    params = {
        "api": args.api, "method": args.method, "status": args.status, "authentication": args.authentication,
        "external": args.external, "data_type": args.data_type, "q": args.q,
    }
    try:
        items = _client(args).get_all("/api/v1/endpoints", params, args.limit)
    except ClientError as exc:
        return _fail("endpoints", str(exc))
    if args.json:
        _print_json({"items": items, "next_cursor": None})
        return 0
    rows = [
        [
            e["name"], f"{e['method']} {e['path']}", short_time(e["last_called"]),
            "yes" if e["inactive_30d"] else "no", e["authentication"],
            short_time(e["external_traffic_observed"]) if e["external_traffic_observed"] else "no",
            data_types_summary(e["data_classification"]), e["requests_30d"],
        ]
        for e in items
    ]
    print(table(
        ["name", "endpoint", "last called", "30 days unused", "authentication", "external traffic observed",
         "data classification", "requests 30d"],
        rows,
    ))
    return 0


def _alerts(args: argparse.Namespace) -> int:
    params = {"type": args.type, "severity": args.severity, "status": args.status}
    try:
        items = _client(args).get_all("/api/v1/alerts", params, args.limit)
    except ClientError as exc:
        return _fail("alerts", str(exc))
    if args.json:
        _print_json({"items": items, "next_cursor": None})
        return 0
    rows = [
        [
            a["id"], a["severity"], a["status"], a["type"],
            f"{a['endpoint']['method']} {a['endpoint']['path']}", a["client"]["ip"], a["count"],
            short_time(a["last_seen"]),
        ]
        for a in items
    ]
    print(table(["id", "severity", "status", "type", "endpoint", "client ip", "count", "last seen"], rows))
    return 0


def _findings(args: argparse.Namespace) -> int:
    params = {"type": args.type, "severity": args.severity, "status": args.status, "api": args.api}
    try:
        items = _client(args).get_all("/api/v1/findings", params, args.limit)
    except ClientError as exc:
        return _fail("findings", str(exc))
    if args.json:
        _print_json({"items": items, "next_cursor": None})
        return 0
    rows = [
        [f["severity"], f["status"], f["type"], f["endpoint"]["api"],
         f"{f['endpoint']['method']} {f['endpoint']['path']}", short_time(f["last_seen"])]
        for f in items
    ]
    print(table(["severity", "status", "type", "api", "endpoint", "last seen"], rows))
    return 0


def _recommendations(args: argparse.Namespace) -> int:
    try:
        items = _client(args).get("/api/v1/recommendations")["items"]
    except ClientError as exc:
        return _fail("recommendations", str(exc))
    if args.json:
        _print_json({"items": items, "next_cursor": None})
        return 0
    rows = [[r["status"], r["severity"], r["title"], len(r["affected_endpoints"])] for r in items]
    print(table(["status", "severity", "recommendation", "affected endpoints"], rows))
    return 0


def _query(args: argparse.Namespace) -> int:
    from collector.explorer import TEMPLATES_BY_ID, resolve

    _, template = resolve(args.template_or_filter)
    body = {"template": template.id} if template and template.id in TEMPLATES_BY_ID else {
        "filter": args.template_or_filter
    }
    client = _client(args)
    items: list[Any] = []
    params: dict[str, str] = {"limit": str(min(500, args.limit or 500))}
    try:
        while True:
            page = client.post("/api/v1/query", json.dumps(body).encode(), params)
            items += page["items"]
            if not page["next_cursor"] or (args.limit and len(items) >= args.limit):
                break
            params["cursor"] = page["next_cursor"]
    except ClientError as exc:
        return _fail("query", str(exc))
    items = items[: args.limit] if args.limit else items
    if args.json:
        _print_json({"items": items, "next_cursor": None})
        return 0
    rows = [
        [e["api"], e["name"], f"{e['method']} {e['path']}", e["status"], e["authentication"],
         "yes" if e["external_traffic_observed"] else "no", e["sensitivity"], e["risk"]["score"], e["findings_count"]]
        for e in items
    ]
    print(table(["api", "name", "endpoint", "status", "authentication", "external", "sensitivity", "risk",
                 "findings"], rows))
    return 0


def _import_spec(args: argparse.Namespace) -> int:
    from collector.specs import SpecError, read_source

    try:
        data, source = read_source(args.source)
    except SpecError as exc:
        return _fail("import-spec", str(exc))
    params = {"api": args.api, "source": source[:2048]}
    try:
        result = _client(args).post("/api/v1/specs", data, params, content_type="application/octet-stream")
    except ClientError as exc:
        return _fail("import-spec", str(exc))
    if args.json:
        _print_json(result)
        return 0
    print(
        f"imported {result['operations']} operations ({result['spec_format']}) into API {result['api']!r}; "
        f"{result['new_endpoints']} new endpoints"
    )
    return 0


def _reader_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collector",
        default=os.environ.get("APIWARD_COLLECTOR", DEFAULT_COLLECTOR),
        help="collector base URL (env APIWARD_COLLECTOR, default %(default)s); token from APIWARD_TOKEN",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for programs instead of a table")
    parser.add_argument("--limit", type=int, default=None, help="at most this many items (default: all)")


def add_commands(subparsers: Any) -> None:
    """Add ``serve``, ``inventory``, ``endpoints`` and ``alerts`` to an argparse subparsers object."""
    serve = subparsers.add_parser(
        "serve",
        help="run the collector",
        description="Run the collector. Tokens come from APIWARD_INGEST_TOKENS, APIWARD_READ_TOKENS, "
        "APIWARD_ADMIN_TOKENS (comma-separated) and/or --tokens-file.",
    )
    serve.add_argument("--listen", default=None, metavar="HOST:PORT", help="default 127.0.0.1:8000")
    serve.add_argument(
        "--database", default=None, metavar="URL",
        help="sqlite:///PATH (default sqlite:///apiward.db) or postgresql://...",
    )
    serve.add_argument(
        "--tokens-file", default=None, metavar="FILE", help="YAML {ingest: [...], read: [...], admin: [...]}"
    )
    serve.add_argument(
        "--insecure-dev", action="store_true", help="no tokens, everything open (loopback addresses only)"
    )
    serve.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--retention-days", type=int, default=None, metavar="N",
        help="roll per-window rows older than N days into hourly rows (env APIWARD_RETENTION_DAYS, default 14)",
    )
    serve.add_argument(
        "--exporters", default=None, metavar="FILE",
        help="YAML list of SIEM exporters (env APIWARD_EXPORTERS_FILE); see 'Send alerts to your SIEM'",
    )
    serve.add_argument(
        "--suppressions", default=None, metavar="FILE",
        help="YAML suppression rules (env APIWARD_SUPPRESSIONS_FILE, default policies/suppressions.yaml)",
    )
    serve.add_argument(
        "--alert-group-window", type=float, default=None, metavar="SECONDS",
        help="quiet time after which a group's next occurrence opens a new alert "
        "(env APIWARD_ALERT_GROUP_WINDOW, default 86400)",
    )
    serve.add_argument(
        "--fleet-interval", type=float, default=None, metavar="SECONDS",
        help="how often the fleet view sums all sensors' windows for population spikes and distributed "
        "enumeration (env APIWARD_FLEET_SECONDS, default 60; 0 = off)",
    )
    serve.add_argument(
        "--behaviour-policy", default=None, metavar="FILE",
        help="behaviour.yaml the fleet view takes its thresholds from; use the sensors' "
        "(env APIWARD_BEHAVIOUR_POLICY, default policies/behaviour.yaml)",
    )
    serve.set_defaults(func=_serve)

    export = subparsers.add_parser(
        "export",
        help="send the full current state to SIEM exporters, or inspect the export outbox",
        description="Works on the collector's database directly (like serve). --snapshot queues every "
        "alert (except suppressed ones) and every unhealthy recommendation for the exporters and delivers "
        "them; a running collector on the same database helps deliver.",
    )
    action = export.add_mutually_exclusive_group(required=True)
    action.add_argument("--snapshot", action="store_true", help="queue and deliver the full current state")
    action.add_argument("--status", action="store_true", help="print outbox rows per exporter and state")
    action.add_argument("--requeue-dead", action="store_true", help="give dead-lettered rows new attempts")
    export.add_argument("--exporter", action="append", default=None, metavar="NAME",
                        help="only this exporter (repeatable; default: all)")
    export.add_argument("--database", default=None, metavar="URL", help="as for serve (env APIWARD_DATABASE)")
    export.add_argument("--exporters", default=None, metavar="FILE", help="as for serve (env APIWARD_EXPORTERS_FILE)")
    export.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long --snapshot waits for delivery (default %(default)s)")
    export.add_argument("--no-wait", action="store_true", help="--snapshot only queues; a collector delivers")
    export.set_defaults(func=_export)

    inv = subparsers.add_parser("inventory", help="inventory counts and sensors")
    _reader_options(inv)
    inv.set_defaults(func=_inventory)

    eps = subparsers.add_parser("endpoints", help="the endpoint inventory")
    _reader_options(eps)
    eps.add_argument("--api", help="API name or id")
    eps.add_argument("--method", help="HTTP method")
    eps.add_argument("--status", choices=["active", "inactive", "awaiting_data"])
    eps.add_argument("--authentication", choices=["authenticated", "unauthenticated", "unknown"])
    eps.add_argument("--external", choices=["true", "false"])
    eps.add_argument("--data-type", dest="data_type", help="e.g. credit_card")
    eps.add_argument("--q", help="substring of the path")
    eps.set_defaults(func=_endpoints)

    alerts = subparsers.add_parser("alerts", help="alerts, newest activity first")
    _reader_options(alerts)
    alerts.add_argument("--type", help="alert type id")
    alerts.add_argument("--severity", choices=["high", "medium", "low", "informational"])
    alerts.add_argument("--status", choices=["active", "resolved", "dismissed"])
    alerts.set_defaults(func=_alerts)

    findings = subparsers.add_parser("findings", help="posture findings, highest severity first")
    _reader_options(findings)
    findings.add_argument("--type", help="finding type, e.g. shadow_endpoint")
    findings.add_argument("--severity", choices=["high", "medium", "low", "informational"])
    findings.add_argument("--status", choices=["open", "resolved"], default="open")
    findings.add_argument("--api", help="API name or id")
    findings.set_defaults(func=_findings)

    rec = subparsers.add_parser("recommendations", help="recommendations with status and affected endpoints")
    _reader_options(rec)
    rec.set_defaults(func=_recommendations)

    query = subparsers.add_parser(
        "query", help="run an explorer template (id or title) or a filter",
        description='Examples: apiward query internet-exposed-sensitive-data; '
        'apiward query \'external and authentication = "unauthenticated"\'',
    )
    _reader_options(query)
    query.add_argument("template_or_filter", metavar="TEMPLATE_OR_FILTER")
    query.set_defaults(func=_query)

    imp = subparsers.add_parser("import-spec", help="import an OpenAPI document (file or URL) into the collector")
    _reader_options(imp)
    imp.add_argument("source", metavar="FILE|URL")
    imp.add_argument("--api", help="API collection name (default: the spec's server host, else its title)")
    imp.set_defaults(func=_import_spec)
