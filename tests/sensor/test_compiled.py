"""The compiled build (mypyc, ``APIWARD_COMPILE=1``): which modules it covers, and that a run of the
suite meant for it really runs the extensions (``make test-compiled`` sets APIWARD_EXPECT_COMPILED)."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import sensor

REPO = Path(__file__).resolve().parents[2]


def compiled_modules() -> list[str]:
    """COMPILED_MODULES from setup.py, read without running setup()."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError("setup.py has no COMPILED_MODULES")


def loads_as_extension(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return spec.origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_every_listed_module_exists_and_loads_from_one_build() -> None:
    files = compiled_modules()
    assert "sensor/pipeline.py" in files and len(files) == len(set(files))
    modules = []
    for file in files:
        assert (REPO / file).is_file(), f"setup.py lists {file}, which does not exist"
        modules.append(file.removesuffix(".py").replace("/", "."))
    kinds = {m: loads_as_extension(m) for m in modules}
    # all compiled or none: a half-compiled tree means a stale or partial build
    assert len(set(kinds.values())) == 1, kinds
    assert sensor.analysis_compiled() is kinds["sensor.pipeline"]


def test_a_compiled_run_really_runs_the_extensions() -> None:
    from sensor import walk

    if os.environ.get("APIWARD_EXPECT_COMPILED") != "1":
        # the main pass runs the source: a leftover extension would shadow an edited .py
        assert not sensor.analysis_compiled() and walk.__file__ is not None and walk.__file__.endswith(".py")
        return
    assert sensor.analysis_compiled()
    assert walk.__file__ is not None and walk.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_the_version_names_the_build() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sensor.cli", "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    build = "analysis compiled with mypyc" if sensor.analysis_compiled() else "interpreted"
    assert out.strip() == f"apiward-sensor {sensor.__version__} ({build})"
