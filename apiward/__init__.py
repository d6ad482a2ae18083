"""apiward: the umbrella command (``apiward``), the demo and shared process plumbing (logging)."""
