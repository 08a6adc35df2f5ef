"""gmail-rejection-exporter: Gmail and Google Workspace rejections from MTA logs, as Prometheus metrics."""

__version__ = "0.1.0"
"""The release; pyproject.toml reads it from here (importing importlib.metadata would slow every start)."""
