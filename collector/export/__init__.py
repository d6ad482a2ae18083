"""SIEM export: renderers (pure functions, golden-tested), transports, the outbox dispatcher.

Module map: ``records`` (what an export event is), ``cef``/``syslog``/``ocsf``/``security_alert``/
``splunk``/``webhook`` (renderers), ``transports`` (UDP/TCP/TLS syslog, HTTP, file), ``exporters``
(renderer + transport per configured exporter), ``config`` (the exporters YAML file), ``dispatcher``
(outbox -> exporter with retry and dead-letter), ``service`` (the collector's lifecycle hook),
``snapshot`` (``apiward export --snapshot``).
"""
