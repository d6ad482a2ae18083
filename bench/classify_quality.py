"""Per-type precision / recall of data classification on the labelled corpus, as a Markdown table.

    python -m bench.classify_quality [--docs N] [--seed S] [--backend auto|hyperscan|re]

The corpus (tests/sensor/classify_corpus.py) is generated with Faker across nine locales and a fixed
seed: positives for every bundled type plus near-miss negatives. Goals: >= 0.99 for checksum-validated
types, >= 0.95 for the others (e-mail, phone, key-name types).
"""

from __future__ import annotations

import argparse
import sys

from sensor.classify import Classifier, load_datatypes
from tests.sensor.classify_corpus import CHECKSUM_TYPES, evaluate, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--backend", choices=("auto", "hyperscan", "re"), default="auto")
    args = parser.parse_args(argv)
    classifier = Classifier(load_datatypes(), backend=args.backend)
    docs = generate(args.docs, args.seed)
    scores = evaluate(classifier, docs)
    print(f"corpus: {len(docs)} documents, seed {args.seed}, backend {classifier.backend}\n")
    print("| type | goal | TP | FP | FN | precision | recall | |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    failed = 0
    for type_id, s in scores.items():
        goal = 0.99 if type_id in CHECKSUM_TYPES else 0.95
        ok = s.precision >= goal and s.recall >= goal
        failed += not ok
        print(
            f"| {type_id} | {goal:.2f} | {s.tp} | {s.fp} | {s.fn} | {s.precision:.3f} | {s.recall:.3f} | "
            f"{'ok' if ok else 'BELOW GOAL'} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
