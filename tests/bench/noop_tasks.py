"""Benchmark-only tasks: the research job's chain shape with no work in it.

`bench.noop_execute` replaces itself with a chain of five `bench.noop` tasks,
as `research.execute` replaces itself with recall → search → rank → summarize
→ store, each passing a JSON dict on. The difference between this chain's
rate and the real job's, on the same worker, is what our stages cost beyond
Celery's own task hops.

Only the benchmark's worker imports this module (see `tests.bench.worker_main`);
the product's Celery app never registers these names.
"""

from __future__ import annotations

from typing import Any

from celery import Task, chain, shared_task

from tasks.constants import QUEUE

NOOP_EXECUTE = "bench.noop_execute"
NOOP_STAGE = "bench.noop"
CHAIN_LENGTH = 5


@shared_task(bind=True, name=NOOP_EXECUTE)  # type: ignore[untyped-decorator]
def noop_execute(self: Task, **kwargs: Any) -> None:
    """Become a chain of CHAIN_LENGTH no-op stages carrying the request along."""
    state = {"job_id": self.request.id, "request": kwargs.get("request")}
    stages = [noop.s(state).set(queue=QUEUE)]
    stages += [noop.s().set(queue=QUEUE) for _ in range(CHAIN_LENGTH - 1)]
    raise self.replace(chain(*stages))


@shared_task(name=NOOP_STAGE)  # type: ignore[untyped-decorator]
def noop(state: dict[str, Any]) -> dict[str, Any]:
    """Hand the state on unchanged."""
    return state
