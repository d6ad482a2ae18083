"""The IO of export: syslog over UDP, TCP and TLS, HTTP POST, append to a file.

Every operation has a timeout, so a receiver that accepts connections and never answers (a black
hole) costs a dispatcher task its timeout, never the collector's event loop or its ingest.

Guarantees differ by transport, and that decides what "at least once" means for each:
- HTTP: a 2xx answer is the receipt; anything else, or no answer, is retried.
- TCP and TLS (RFC 6587 octet counting, RFC 5425): the kernel accepting our bytes is the only receipt
  syslog offers. We reconnect when the receiver closed the connection before writing, which covers
  restarts; bytes in flight when a receiver crashes can still be lost (use RELP or HTTP for more).
- UDP: fire and forget, at most once by nature (kept for receivers that only speak UDP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp

from collector.export.syslog import octet_frame


class DeliveryError(RuntimeError):
    """A send failed; the rows are retried (the message is stored as ``last_error``)."""


def tls_context(ca_file: str | None, cert_file: str | None, key_file: str | None, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class UdpSender:
    """One datagram per message (RFC 5426); no framing."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._transport: asyncio.DatagramTransport | None = None

    async def send(self, messages: Sequence[bytes]) -> None:
        if self._transport is None or self._transport.is_closing():
            loop = asyncio.get_running_loop()
            try:
                self._transport, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=self._address
                )
            except OSError as exc:
                raise DeliveryError(f"udp {self._address[0]}:{self._address[1]}: {exc}") from exc
        for message in messages:
            self._transport.sendto(message)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class StreamSender:
    """Octet-counted frames over one kept-open TCP or TLS connection, re-opened after any error."""

    def __init__(
        self, host: str, port: int, timeout: float, context: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._context, self._server_name = context, server_name
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _usable(self) -> bool:
        # A receiver that restarted closed our connection: at_eof() is how that shows before we write.
        return self._writer is not None and not self._writer.is_closing() and not (
            self._reader is not None and self._reader.at_eof()
        )

    async def _connect(self) -> asyncio.StreamWriter:
        await self.close()
        kwargs: dict[str, Any] = {}
        if self._context is not None:
            kwargs.update(ssl=self._context, server_hostname=self._server_name or self._host)
        async with asyncio.timeout(self._timeout):
            reader, writer = await asyncio.open_connection(self._host, self._port, **kwargs)
        self._reader, self._writer = reader, writer
        return writer

    async def send(self, messages: Sequence[bytes]) -> None:
        where = f"{'tls' if self._context else 'tcp'} {self._host}:{self._port}"
        try:
            writer = self._writer if self._usable() and self._writer is not None else await self._connect()
            writer.write(b"".join(octet_frame(m) for m in messages))
            async with asyncio.timeout(self._timeout):
                await writer.drain()
        except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


class HttpSender:
    """POSTs with one pooled session per exporter; a 2xx answer is the receipt."""

    def __init__(self, url: str, timeout: float, headers: Iterable[tuple[str, str]] = (),
                 context: ssl.SSLContext | None = None) -> None:
        self._url, self._timeout, self._headers, self._context = url, timeout, dict(headers), context
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._context if self._context is not None else True, limit=4)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout), auto_decompress=False
            )
        return self._session

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> str:
        """POST ``body``; returns the response text, raises ``DeliveryError`` unless 2xx."""
        all_headers = {"Content-Type": "application/json", **self._headers, **(headers or {})}
        try:
            async with self._client().post(self._url, data=body, headers=all_headers) as resp:
                text = (await resp.content.read(4096)).decode(errors="replace")
                if not 200 <= resp.status < 300:
                    raise DeliveryError(f"POST {self._url}: HTTP {resp.status}: {text[:200]}")
                return text
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"POST {self._url}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class FileSender:
    """Appends JSON lines; written from a worker thread so a slow disk never blocks the event loop."""

    def __init__(self, path: str) -> None:
        self._path = path

    def _append(self, data: bytes) -> None:
        with open(self._path, "ab") as fh:
            fh.write(data)
            fh.flush()

    async def write_lines(self, records: Sequence[dict[str, Any]]) -> None:
        data = b"".join(json.dumps(r, separators=(",", ":"), sort_keys=True).encode() + b"\n" for r in records)
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            raise DeliveryError(f"file {self._path}: {exc.strerror}") from exc

    async def close(self) -> None:
        return None


__all__ = ["DeliveryError", "FileSender", "HttpSender", "StreamSender", "UdpSender", "tls_context"]
