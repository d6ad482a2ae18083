"""sensor/cpus.py: the CPUs a sensor may use, from its affinity mask and a cgroup quota (v2 and v1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sensor.config import ConfigError, SensorConfig, load_config
from sensor.cpus import cgroup_cpu_quota, usable_cpus


def v2(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def v1(root: Path, quota: int, period: int) -> Path:
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(
    ("text", "quota"), [("max 100000\n", None), ("150000 100000\n", 1.5), ("400000 100000\n", 4.0), ("garbage", None)]
)
def test_cgroup_v2_quota(tmp_path: Path, text: str, quota: float | None) -> None:
    assert cgroup_cpu_quota(v2(tmp_path, text)) == quota


@pytest.mark.parametrize(("quota", "period", "expected"), [(-1, 100000, None), (250000, 100000, 2.5)])
def test_cgroup_v1_quota(tmp_path: Path, quota: int, period: int, expected: float | None) -> None:
    assert cgroup_cpu_quota(v1(tmp_path, quota, period)) == expected


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_a_quota_caps_the_affinity_and_rounds_down(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(v2(tmp_path / "a", "150000 100000")) == 1  # 1.5 CPUs keep one process busy
    assert usable_cpus(v2(tmp_path / "b", "50000 100000")) == 1  # never below one
    assert usable_cpus(v2(tmp_path / "c", f"{(affinity + 3) * 100000} 100000")) == affinity


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", None), ("AUTO", None), ("true", True), ("off", False), (True, True), (False, False)],
)
def test_analysis_process_setting(tmp_path: Path, value: object, expected: bool | None) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        f"upstream: http://127.0.0.1:1\nanalysis_process: {str(value).lower() if isinstance(value, bool) else value}\n"
    )
    assert load_config({}, str(cfg), environ={}).analysis_process is expected


def test_operator_default_is_auto_embedded_default_is_one_process() -> None:
    assert load_config({"upstream": "http://127.0.0.1:1"}, environ={}).analysis_process is None
    assert (
        load_config({"upstream": "http://127.0.0.1:1"}, environ={"APIWARD_ANALYSIS_PROCESS": "false"}).analysis_process
        is False
    )
    assert SensorConfig().analysis_process is False
    with pytest.raises(ConfigError, match="auto, true or false"):
        load_config({"upstream": "http://127.0.0.1:1"}, environ={"APIWARD_ANALYSIS_PROCESS": "2"})
