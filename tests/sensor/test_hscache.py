"""The on-disk cache of compiled Hyperscan databases (sensor/hscache.py): a cached database matches
exactly what a fresh compile matches, and nothing wrong with the cache can break matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor import hscache

hs = pytest.importorskip("hyperscan")  # hyperscan is a dependency on x86_64/aarch64

EXPRS = [rb"union\s+select", rb"<script", rb"\.\./"]
FLAGS = [int(hs.HS_FLAG_CASELESS), 0, 0]
TEXT = b"id=1 UNION  SELECT x -- <script> ../../etc/passwd"


def matches(db: object) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    db.scan(TEXT, match_event_handler=lambda i, _s, end, _f, _c: found.append((i, end)))  # type: ignore[attr-defined]
    return sorted(found)


def test_cached_database_matches_like_a_fresh_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIWARD_CACHE_DIR", str(tmp_path))
    fresh = hscache.compile_block(hs, EXPRS, FLAGS)
    (stored,) = tmp_path.glob("hs-*.db")
    cached = hscache.compile_block(hs, EXPRS, FLAGS)
    assert matches(fresh) == matches(cached) and len(matches(fresh)) >= 3
    # another expression set is another file, not the same database
    other = hscache.compile_block(hs, EXPRS[:1], FLAGS[:1])
    assert len(list(tmp_path.glob("hs-*.db"))) == 2
    assert {i for i, _ in matches(other)} == {0}
    # a damaged file is compiled again (same matches) and replaced by a whole one
    stored.write_bytes(b"\x00garbage")
    assert matches(hscache.compile_block(hs, EXPRS, FLAGS)) == matches(fresh)
    assert stored.stat().st_size > 100


def test_no_usable_cache_directory_still_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("APIWARD_CACHE_DIR", str(blocker / "cache"))
    assert len(matches(hscache.compile_block(hs, EXPRS, FLAGS))) >= 3
    monkeypatch.setenv("APIWARD_CACHE_DIR", "")  # turned off: nothing written anywhere
    assert hscache.cache_dir() is None
    assert len(matches(hscache.compile_block(hs, EXPRS, FLAGS))) >= 3


def test_old_databases_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIWARD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(hscache, "MAX_FILES", 3)
    for i in range(5):
        hscache.compile_block(hs, [b"needle%d" % i], [0])
    assert len(list(tmp_path.glob("hs-*.db"))) == 3
