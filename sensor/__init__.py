"""apiward sensor: the data plane (capture -> analyse -> summarise -> ship)."""

import functools
import importlib.machinery
import importlib.util

__version__ = "0.1.0"


@functools.cache  # which build runs cannot change inside a process; metrics ask on every scrape
def analysis_compiled() -> bool:
    """True when the analysis modules run as mypyc-compiled extensions (``APIWARD_COMPILE=1`` builds).

    Read from where ``sensor.pipeline`` would load from, without importing it: a stale mix is
    impossible in a wheel, and operators see in the start-up line and the metrics which build runs.
    """
    spec = importlib.util.find_spec("sensor.pipeline")
    origin = spec.origin if spec is not None else None
    return origin is not None and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
