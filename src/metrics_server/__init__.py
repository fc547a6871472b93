"""metrics-server: business events in, exact live metrics out over WebSocket."""

from metrics_protocol.version import __version__

__all__ = ["__version__"]
