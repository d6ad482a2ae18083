"""Where the shared public corpora live (specs, bodies, benign traffic).

CI clones the repository next to a copy of ``shared/``; a developer's checkout has it at the same
relative place. ``APIWARD_CORPORA`` overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def _locate() -> Path:
    override = os.environ.get("APIWARD_CORPORA")
    candidates = [Path(override)] if override else []
    candidates += [_REPO.parent / "shared" / "corpora", Path("/work/shared/corpora")]
    for candidate in candidates:
        if (candidate / "README.md").exists():
            return candidate
    return candidates[0]


CORPORA = _locate()
SPECS = CORPORA / "specs"
