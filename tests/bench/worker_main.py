"""`research-arm worker`, plus the benchmark's own tasks.

    python -m tests.bench.worker_main worker --pool=threads --concurrency=16

Runs exactly the product's worker command line (`worker.cli.main`), after
importing `tests.bench.noop_tasks` and `tests.bench.fanout_tasks`, so that the
same worker, with the same settings, can also run the raw Celery chain and the
fan-out shapes the benchmark compares with.
"""

from __future__ import annotations

import sys

# Imported for their side effect: registering the bench.* tasks.
import tests.bench.fanout_tasks
import tests.bench.noop_tasks  # noqa: F401
from worker.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
