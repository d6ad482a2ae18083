"""apiward sensor: the data plane (capture -> analyse -> summarise -> ship)."""

__version__ = "0.1.0"
