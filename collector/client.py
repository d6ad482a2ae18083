"""A small blocking client for the collector's read API (the CLI readers use it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT = 15.0
MAX_PAGES = 10_000


class ClientError(Exception):
    """One line for the operator: what failed and, when it helps, what to do."""


class CollectorClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClientError(f"collector URL must be http(s)://HOST:PORT, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.request("GET", path, params)

    def post(self, path: str, body: bytes, params: dict[str, str] | None = None,
             content_type: str = "application/json") -> Any:
        return self.request("POST", path, params, body, content_type)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 (scheme checked)
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ClientError(_http_error(exc)) from None
        except urllib.error.URLError as exc:
            raise ClientError(f"cannot reach the collector at {self.base_url}: {exc.reason}") from None
        except (TimeoutError, ConnectionError) as exc:
            raise ClientError(f"cannot reach the collector at {self.base_url}: {exc}") from None
        except ValueError as exc:
            raise ClientError(f"the collector at {self.base_url} did not answer JSON: {exc}") from None

    def get_all(self, path: str, params: dict[str, str] | None = None, limit: int | None = None) -> list[Any]:
        """Follow ``next_cursor`` until the last page (or ``limit`` items)."""
        items: list[Any] = []
        params = dict(params or {})
        params["limit"] = str(min(500, limit or 500))
        for _ in range(MAX_PAGES):
            page = self.get(path, params)
            items.extend(page.get("items", []))
            if limit is not None and len(items) >= limit:
                return items[:limit]
            if not page.get("next_cursor"):
                return items
            params["cursor"] = page["next_cursor"]
        return items


def _http_error(exc: urllib.error.HTTPError) -> str:
    detail = ""
    try:
        body = json.loads(exc.read() or b"{}")
        detail = str(body.get("detail") or body.get("title") or "")
    except (ValueError, AttributeError):
        pass
    hint = {
        401: " (set APIWARD_TOKEN to a read or admin token)",
        403: " (the token's role does not allow this)",
    }.get(exc.code, "")
    return f"collector answered {exc.code}{': ' + detail if detail else ''}{hint}"
