"""``python -m metrics_tui``, and the ``metrics-tui`` command."""

from __future__ import annotations

import gc


def main() -> int:
    gc.disable()  # see cli.collector_paused: the same for the imports that come before it
    try:
        from metrics_tui.cli import main as run
    finally:
        gc.enable()
    return run()


if __name__ == "__main__":
    raise SystemExit(main())
