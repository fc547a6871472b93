"""metrics-server: business events in, exact live metrics out over WebSocket."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metrics-tui")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
