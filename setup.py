"""Optional compiled build of the sensor's analysis path (mypyc).

``APIWARD_COMPILE=1`` compiles the modules below into C extensions with mypyc, from the same typed
source the interpreter runs: no second implementation to keep in step, and the same test suite runs
against both builds (``make test-compiled``). Without the variable this file adds nothing and the
package installs as plain Python, as every other setting lives in ``pyproject.toml``.

mypyc type-checks the whole program before compiling it, so the build environment needs the runtime
dependencies, mypy and the stubs (the ``compile`` extra), and a C compiler with the Python headers::

    pip install '.[compile]' && APIWARD_COMPILE=1 pip install --no-build-isolation --no-deps --force-reinstall .
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

# The per-exchange work: everything Pipeline.submit reaches, and replay's capture -> Exchange
# conversion. The proxy and I/O code stays interpreted (asyncio protocols subclass Python classes,
# and most of their time is in C already), and so do the policy schemas (msgspec Structs cannot be
# mypyc native classes).
COMPILED_MODULES = [
    "sensor/alerting.py",
    "sensor/behaviour/engine.py",
    "sensor/behaviour/iplists.py",
    "sensor/behaviour/paramtypes.py",
    "sensor/behaviour/sketches.py",
    "sensor/behaviour/useragents.py",
    "sensor/classify.py",
    "sensor/evidence.py",
    "sensor/fastpath.py",
    "sensor/fastpath_mirror.py",
    "sensor/fastpath_upstream.py",
    "sensor/http_common.py",
    "sensor/observation.py",
    "sensor/offload.py",
    "sensor/pipeline.py",
    "sensor/replay.py",
    "sensor/routing.py",
    "sensor/signatures.py",
    "sensor/summary.py",
    "sensor/transforms.py",
    "sensor/validators.py",
    "sensor/walk.py",
]


def _compile_requested() -> bool:
    return os.environ.get("APIWARD_COMPILE", "").strip().lower() in ("1", "true", "yes", "on")


def _ext_modules() -> list[object]:
    if not _compile_requested():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit(
            "APIWARD_COMPILE=1 needs mypyc and the runtime dependencies in the build environment: pip install "
            "'.[compile]' && APIWARD_COMPILE=1 pip install --no-build-isolation --no-deps --force-reinstall ."
        )
    # opt_level 3 as for mypy's own wheels; debug_level 1 keeps line numbers in tracebacks, which the
    # pipeline's analysis_failed log line reports.
    return list(mypycify(COMPILED_MODULES, opt_level="3", debug_level="1"))


setup(ext_modules=_ext_modules())
