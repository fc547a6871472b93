"""One script per figure (see docs/PERFORMANCE.md), run from the repository root as
``python -m bench.NAME``. A package, so that the tests import the benches and their shared
helpers (``bench._common``) by name."""
