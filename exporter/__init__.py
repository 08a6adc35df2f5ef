"""gmail-rejection-exporter: Gmail and Google Workspace rejections from MTA logs, as Prometheus metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gmail-rejection-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
