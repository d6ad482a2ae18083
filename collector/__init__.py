"""apiward collector: the control plane (ingest -> store -> inventory/alerts -> JSON API)."""
