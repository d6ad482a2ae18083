"""Compiled Hyperscan databases, kept on disk between starts.

Compiling the bundled signatures and data-type patterns takes about two seconds, on every sensor
start, replay run, proxy-process restart and test. A block-mode database serialises to a few hundred
KiB (``hyperscan.dumpb``); it is stored under a key that covers everything the compiled form depends
on (Hyperscan's version, the CPU it was built for, expressions, flags), so an edited policy or another
machine simply compiles again. Anything wrong with the cache -- no writable directory, a truncated or
foreign file -- falls back to compiling; the cache never changes what is matched.

Where: ``$APIWARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/apiward``, else ``~/.cache/apiward``;
``APIWARD_CACHE_DIR=`` (empty) turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from apiward.logs import get_logger

log = get_logger("sensor.hscache")

MAX_FILES = 32  # a bundled policy set makes 7


def cache_dir() -> Path | None:
    configured = os.environ.get("APIWARD_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "apiward"


def _key(hs: Any, exprs: list[bytes], flags: list[int]) -> str:
    digest = hashlib.sha256()
    version = getattr(hs, "__version__", "")
    for part in (str(version), platform.machine(), platform.platform(), str(len(exprs))):
        digest.update(part.encode() + b"\x00")
    for expr, flag in zip(exprs, flags, strict=True):
        digest.update(len(expr).to_bytes(4, "little") + expr + flag.to_bytes(4, "little"))
    return digest.hexdigest()


def compile_block(hs: Any, exprs: list[bytes], flags: list[int]) -> Any:
    """A block-mode database of ``exprs`` (ids 0..n-1): from the cache when it holds this exact
    set, else compiled (and stored). Compile errors propagate exactly as without the cache."""
    where = cache_dir()
    path = where / f"hs-{_key(hs, exprs, flags)}.db" if where is not None else None
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError:
            data = b""  # not cached yet (or unreadable)
        if data:
            try:
                db = hs.loadb(data, hs.HS_MODE_BLOCK)
                db.scratch = hs.Scratch(db)  # compile() allocates one; a loaded database has none
                return db
            except Exception as exc:  # truncated, foreign, built for another CPU: compile instead
                log.info("hyperscan_cache_unusable", file=str(path), error=type(exc).__name__)
    db = hs.Database(mode=hs.HS_MODE_BLOCK)
    db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
    if path is not None:
        _store(path, hs.dumpb(db))
    return db


def _store(path: Path, data: bytes) -> None:
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hs-", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never a part
        _prune(path.parent)
    except OSError as exc:  # read-only file system, no home directory: the cache is optional
        log.debug("hyperscan_cache_not_written", error=exc.strerror or type(exc).__name__)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _prune(where: Path) -> None:
    """Keep the newest MAX_FILES databases: every edited policy leaves its old ones behind."""
    files = sorted(where.glob("hs-*.db"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[MAX_FILES:]:
        with contextlib.suppress(OSError):
            old.unlink()
