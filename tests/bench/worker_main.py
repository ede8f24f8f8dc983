"""`research-arm worker`, plus the benchmark's no-op tasks.

    python -m tests.bench.worker_main worker --pool=threads --concurrency=16

Runs exactly the product's worker command line (`worker.cli.main`), after
importing `tests.bench.noop_tasks` so that the same worker, with the same
settings, can also run the raw Celery chain the benchmark compares with.
"""

from __future__ import annotations

import sys

import tests.bench.noop_tasks  # noqa: F401  (registers bench.noop_execute and bench.noop)
from worker.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
