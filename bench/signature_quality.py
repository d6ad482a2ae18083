"""Signature quality: true-positive rate per attack category and false-positive rates.

    python -m bench.signature_quality [--paranoia 2] [--full] [--engine auto|hyperscan|re] [--show N]

Prints a Markdown table. "Flagged" means the request's anomaly score reached the threshold of the
paranoia level (``ScanResult.blocked``); the "any match" column counts requests with at least one
matching rule. ``--full`` uses all 36,000 CSIC requests instead of every 12th.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass

from sensor.signatures import ScanItem, SignatureEngine
from tests.sensor.attack_corpus import Request, attack_corpus, benign_corpus, natural_language


@dataclass
class Quality:
    tpr: dict[str, tuple[int, int]]  # category -> (flagged, total)
    benign: dict[str, tuple[int, int, int]]  # source -> (flagged, any match, total)
    nl_pl1: tuple[int, int, int]  # (flagged, any match, total) at paranoia 1
    misses: list[Request]
    false_positives: list[tuple[Request, list[str]]]


def measure(paranoia: int = 2, engine: str = "auto", csic_step: int = 12) -> Quality:
    eng = SignatureEngine.from_policies(paranoia=paranoia, engine=engine)
    pl1 = SignatureEngine.from_policies(paranoia=1, engine=engine)
    tpr: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses: list[Request] = []
    for req in attack_corpus():
        res = eng.scan(req.items())
        tpr[req.category][1] += 1
        if res.blocked:
            tpr[req.category][0] += 1
        else:
            misses.append(req)
    benign: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    fps: list[tuple[Request, list[str]]] = []
    for req in benign_corpus(csic_step):
        res = eng.scan(req.items())
        b = benign[req.category]
        b[2] += 1
        b[1] += bool(res.matches)
        if res.blocked:
            b[0] += 1
        if res.matches:
            fps.append((req, [f"{m.rule_id}@{m.location}:{m.name}={m.excerpt!r}" for m in res.matches]))
    nl = [0, 0, 0]
    for text in natural_language():
        res = pl1.scan([ScanItem("body_value", "text", text), ScanItem("query_value", "q", text)])
        nl[2] += 1
        nl[1] += bool(res.matches)
        nl[0] += res.blocked
    return Quality(
        tpr={k: (v[0], v[1]) for k, v in tpr.items()},
        benign={k: (v[0], v[1], v[2]) for k, v in benign.items()},
        nl_pl1=(nl[0], nl[1], nl[2]),
        misses=misses,
        false_positives=fps,
    )


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.2f} %" if b else "n/a"


def render(q: Quality, paranoia: int) -> str:
    lines = [
        f"### Attacks flagged at paranoia level {paranoia}",
        "",
        "| category | flagged | requests | TPR |",
        "|---|---:|---:|---:|",
    ]
    tot_f = tot_n = 0
    for cat in sorted(q.tpr):
        f, n = q.tpr[cat]
        tot_f += f
        tot_n += n
        lines.append(f"| {cat} | {f} | {n} | {_pct(f, n)} |")
    lines.append(f"| **all** | {tot_f} | {tot_n} | **{_pct(tot_f, tot_n)}** |")
    lines += ["", f"### Benign requests at paranoia level {paranoia}", ""]
    lines += ["| source | flagged | any match | requests | FPR (flagged) |", "|---|---:|---:|---:|---:|"]
    bf = bm = bn = 0
    for src in sorted(q.benign):
        f, m, n = q.benign[src]
        bf += f
        bm += m
        bn += n
        lines.append(f"| {src} | {f} | {m} | {n} | {_pct(f, n)} |")
    lines.append(f"| **all** | {bf} | {bm} | {bn} | **{_pct(bf, bn)}** |")
    f, m, n = q.nl_pl1
    lines += ["", "### Natural-language sentences at paranoia level 1", ""]
    lines += [
        "| flagged | any match | sentences | FPR |",
        "|---:|---:|---:|---:|",
        f"| {f} | {m} | {n} | {_pct(f, n)} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--paranoia", type=int, default=2)
    p.add_argument("--engine", default="auto", choices=["auto", "hyperscan", "re"])
    p.add_argument("--full", action="store_true", help="all 36,000 CSIC requests")
    p.add_argument("--show", type=int, default=0, help="print up to N misses and false positives")
    args = p.parse_args(argv)
    q = measure(args.paranoia, args.engine, 1 if args.full else 12)
    print(render(q, args.paranoia))
    if args.show:
        print("\n#### misses")
        for req in q.misses[: args.show]:
            print(
                f"- {req.category}/{req.variant}/{req.placement}: path={req.path[:80]!r} q={req.query!r:.120} "
                f"h={[h for h in req.headers if h[0] not in ('Accept', 'Content-Type', 'X-Request-Id')]!r:.150} "
                f"b={req.body!r:.150}"
            )
        print("\n#### benign with matches")
        for req, ms in q.false_positives[: args.show]:
            print(f"- {req.category}/{req.variant}: {ms}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
