"""metrics-tui: a live terminal monitor for metrics-server."""

from metrics_protocol.version import __version__

__all__ = ["__version__"]
