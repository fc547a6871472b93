"""Every acknowledged event survives SIGKILL, and a producer's retry double-counts nothing.

A real server process takes a sustained stream of batches and is killed with SIGKILL at a random
moment; a new process on the same database must hold every acknowledged batch, and replaying
the batches that were in flight (whose ack never came) must leave the figures as if each had
been applied once. The scenario lives in ``bench/crash_ingest.py``, which runs it 10 times; CI
runs two rounds.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import crash_ingest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


async def test_acked_batches_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("CRASH_SEED"))
    now = time.time()
    applied: list[dict] = []  # every batch that must count exactly once, across rounds
    for round_ in range(2):
        # Raises AssertionError naming what was lost or double-counted.
        print(await crash_ingest.one_round(tmp_path / "m.db", round_, rng, now, applied))
    assert applied
