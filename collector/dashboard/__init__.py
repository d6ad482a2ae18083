"""The dashboard: server-rendered pages served by the collector (``setup`` adds them to the app)."""

from collector.dashboard.routes import setup

__all__ = ["setup"]
