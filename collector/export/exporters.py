"""One exporter = one renderer + one transport, built from its configuration."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Protocol

from collector.export import cef, ocsf, security_alert, splunk, syslog, webhook
from collector.export.config import ExporterConfig
from collector.export.records import ExportRecord, Source
from collector.export.transports import (
    DeliveryError,
    FileSender,
    HttpSender,
    StreamSender,
    UdpSender,
    tls_context,
)


class Exporter(Protocol):
    config: ExporterConfig

    async def send(self, records: Sequence[ExportRecord], delivery_ids: Sequence[int]) -> None:
        """Deliver every record or raise ``DeliveryError`` (then the whole batch is retried)."""

    async def close(self) -> None: ...


class SyslogExporter:
    def __init__(self, config: ExporterConfig, source: Source) -> None:
        self.config = config
        self._source = Source(source.vendor, source.product, source.version, config.hostname or source.hostname)
        self._facility = syslog.FACILITIES[config.facility]
        self._sender: UdpSender | StreamSender
        if config.protocol == "udp":
            self._sender = UdpSender(config.host, config.port)
        else:
            context = None
            if config.protocol == "tls":
                context = tls_context(config.ca_file, config.cert_file, config.key_file, config.verify)
            self._sender = StreamSender(config.host, config.port, config.timeout, context, config.server_name)

    def render(self, record: ExportRecord) -> bytes:
        return syslog.message(
            cef.render(record, self._source), at=record.at, hostname=self._source.hostname,
            severity=record.severity, facility=self._facility, msgid=record.event.split(".")[0],
        )

    async def send(self, records: Sequence[ExportRecord], delivery_ids: Sequence[int]) -> None:
        await self._sender.send([self.render(r) for r in records])

    async def close(self) -> None:
        await self._sender.close()


class JsonExporter:
    """OCSF or SecurityAlert records: a JSON array per POST, or JSON lines appended to a file."""

    def __init__(self, config: ExporterConfig, source: Source) -> None:
        self.config = config
        self._source = source
        self._render = ocsf.render if config.type == "ocsf" else security_alert.render
        self._http = _http(config) if config.url else None
        self._file = FileSender(config.file) if config.file else None

    async def send(self, records: Sequence[ExportRecord], delivery_ids: Sequence[int]) -> None:
        rendered = [self._render(r, self._source) for r in records]
        if self._file is not None:
            await self._file.write_lines(rendered)
        elif self._http is not None:
            await self._http.post(json.dumps(rendered, separators=(",", ":"), sort_keys=True).encode())

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class SplunkExporter:
    def __init__(self, config: ExporterConfig, source: Source) -> None:
        self.config = config
        self._source = source
        self._http = _http(config)

    async def send(self, records: Sequence[ExportRecord], delivery_ids: Sequence[int]) -> None:
        events = [splunk.render(r, self._source, sourcetype=self.config.sourcetype, index=self.config.index)
                  for r in records]
        text = await self._http.post(splunk.batch_body(events),
                                     {"Authorization": splunk.authorization(self.config.token)})
        try:
            answer: Any = json.loads(text)
        except ValueError:
            return  # a 2xx without the usual JSON (a proxy in between) still means accepted
        if isinstance(answer, dict) and answer.get("code", 0) != 0:
            raise DeliveryError(f"Splunk HEC refused the batch: {answer.get('text')}")

    async def close(self) -> None:
        await self._http.close()


class WebhookExporter:
    def __init__(self, config: ExporterConfig, source: Source) -> None:
        self.config = config
        self._http = _http(config)
        self._secret = config.secret.encode()

    async def send(self, records: Sequence[ExportRecord], delivery_ids: Sequence[int]) -> None:
        for record, delivery in zip(records, delivery_ids, strict=True):
            sent_at = int(time.time())
            raw = webhook.body(record, sent_at)
            await self._http.post(raw, webhook.headers(record, self._secret, raw, sent_at, str(delivery)))

    async def close(self) -> None:
        await self._http.close()


def _http(config: ExporterConfig) -> HttpSender:
    assert config.url is not None
    context = None
    if config.url.startswith("https://"):
        context = tls_context(config.ca_file, config.cert_file, config.key_file, config.verify)
    return HttpSender(config.url, config.timeout, config.headers, context)


def build(config: ExporterConfig, source: Source) -> Exporter:
    if config.type == "syslog":
        return SyslogExporter(config, source)
    if config.type in ("ocsf", "security_alert"):
        return JsonExporter(config, source)
    if config.type == "splunk_hec":
        return SplunkExporter(config, source)
    if config.type == "webhook":
        return WebhookExporter(config, source)
    raise ValueError(f"unknown exporter type {config.type!r}")


__all__ = ["Exporter", "JsonExporter", "SplunkExporter", "SyslogExporter", "WebhookExporter", "build"]
