"""Deployment tests: a real collector on 127.0.0.1 (in-process, as in tests/e2e) and helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from collector.app import create_app
from tests.e2e.conftest import collector_settings, read_json, serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def collector_url(tmp_path: Path) -> AsyncIterator[str]:
    runner, port = await serve(create_app(collector_settings(tmp_path / "collector.db")))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def endpoints(collector: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The inventory as {(method, path template): endpoint}."""
    items = (await read_json(collector, "/api/v1/endpoints"))["items"]
    return {(e["method"], e["path"]): e for e in items}
