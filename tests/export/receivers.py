"""Real receivers for the export tests: syslog over UDP, TCP and TLS, and an HTTP endpoint.

Each runs on 127.0.0.1 on a free port inside the test's event loop and records what it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass
class SyslogReceiver:
    messages: list[bytes] = field(default_factory=list)
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, message: bytes) -> None:
        self.messages.append(message)
        self.arrived.set()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[bytes]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receiver.add(data)


@contextlib.asynccontextmanager
async def udp_syslog() -> Any:
    receiver = SyslogReceiver()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(receiver), local_addr=("127.0.0.1", 0))
    receiver.port = transport.get_extra_info("sockname")[1]
    try:
        yield receiver
    finally:
        transport.close()


async def _read_octet_counted(reader: asyncio.StreamReader, receiver: SyslogReceiver) -> None:
    """RFC 6587 octet counting: ``LEN SP MSG``; anything else is a framing error (the test fails)."""
    while True:
        try:
            length = await reader.readuntil(b" ")
        except (asyncio.IncompleteReadError, ConnectionError):  # the sender closed, or we aborted
            return
        receiver.add(await reader.readexactly(int(length[:-1])))


@contextlib.asynccontextmanager
async def stream_syslog(context: ssl.SSLContext | None = None, port: int = 0) -> Any:
    receiver = SyslogReceiver()
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await _read_octet_counted(reader, receiver)
        finally:
            writer.close()
            writers.discard(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        # Abort the connections a sender still holds open. Cancelling their handler tasks instead
        # left the transports open (asyncio's stream callback re-raises the cancellation rather than
        # closing), and wait_closed() then waited for them forever.
        for writer in list(writers):
            writer.transport.abort()
        await asyncio.wait_for(server.wait_closed(), 10)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apiward test syslog")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class HttpReceiver:
    """Records every request; ``respond`` decides the answer (status) per request number."""

    url: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    attempts: int = 0
    respond: Callable[[int], int] = lambda n: 200
    hang: bool = False  # accept and never answer (a black hole)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if self.hang:
            await asyncio.sleep(3600)
        status = self.respond(self.attempts)
        if 200 <= status < 300:
            self.requests.append((dict(request.headers), body))
            self.arrived.set()
            return web.json_response({"text": "Success", "code": 0}, status=status)
        return web.json_response({"text": "unavailable", "code": 9}, status=status)

    async def wait_until(self, done: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def http_receiver(path: str = "/ingest") -> Any:
    receiver = HttpReceiver()
    app = web.Application()
    app.router.add_post(path, receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict CEF parser: 7 header fields split on unescaped pipes, then key=value extensions."""
    assert line.startswith("CEF:"), line[:40]
    fields: list[str] = []
    current, i = "", 4
    while len(fields) < 7:
        ch = line[i]
        if ch == "\\":
            nxt = line[i + 1]
            assert nxt in "\\|", f"bad header escape \\{nxt}"
            current += nxt
            i += 2
            continue
        if ch == "|":
            fields.append(current)
            current = ""
        else:
            assert ch not in "\r\n"
            current += ch
        i += 1
    ext = line[i:]
    out: dict[str, str] = {}
    key, value, j = None, "", 0
    # Keys are [A-Za-z0-9]+ followed by '='; a value runs until the next ' key='.
    import re

    token = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")
    positions = [(m.start(1), m.end(), m.group(1)) for m in token.finditer(ext) if not _escaped(ext, m.end() - 1)]
    for n, (_, vstart, key) in enumerate(positions):
        vend = positions[n + 1][0] - 1 if n + 1 < len(positions) else len(ext)
        raw = ext[vstart:vend]
        value, j = "", 0
        while j < len(raw):
            if raw[j] == "\\":
                nxt = raw[j + 1]
                value += {"n": "\n", "r": "\r", "=": "=", "\\": "\\"}[nxt]
                j += 2
            else:
                assert raw[j] not in "\r\n="
                value += raw[j]
                j += 1
        out[key] = value
    return fields, out


def _escaped(text: str, index: int) -> bool:
    backslashes, k = 0, index - 1
    while k >= 0 and text[k] == "\\":
        backslashes += 1
        k -= 1
    return backslashes % 2 == 1
