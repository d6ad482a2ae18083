"""How many CPUs this process may really use: the scheduler's affinity mask, capped by a cgroup CPU
quota (a container's ``resources.limits.cpu``).

``os.cpu_count()`` answers the host's count, which inside a container limited to one CPU would
wrongly put the analysis in a second process that can only steal time from the proxy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _quota_v2(root: Path) -> float | None:
    # cgroup v2: "<quota> <period>" or "max <period>" in the process's own cgroup directory
    try:
        own = Path("/proc/self/cgroup").read_text(encoding="ascii")
    except OSError:
        own = ""
    relative = next((line[3:].strip() for line in own.splitlines() if line.startswith("0::")), "/")
    for directory in (root / relative.lstrip("/"), root):
        try:
            quota, period = (directory / "cpu.max").read_text(encoding="ascii").split()[:2]
        except (OSError, ValueError):
            continue
        if quota == "max":
            return None
        return int(quota) / int(period)
    return None


def _quota_v1(root: Path) -> float | None:
    for directory in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota = int((directory / "cpu.cfs_quota_us").read_text(encoding="ascii"))
            period = int((directory / "cpu.cfs_period_us").read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup allows per period (1.5 = one and a half CPUs); None: no limit."""
    quota = _quota_v2(root)
    return quota if quota is not None else _quota_v1(root)


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process can keep busy at once (at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        count = min(count, math.floor(quota))  # 1.5 CPUs cannot keep two processes busy
    return max(1, count)
