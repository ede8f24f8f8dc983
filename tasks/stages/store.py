"""Store: one batch upsert of the kept papers into the index; parked in Redis if Qdrant is away."""

from __future__ import annotations

from tasks.errors import MemoryUnavailable
from tasks.job import JobState
from tasks.paper_index import PaperIndex, PendingWrites
from tasks.resources import StageResources
from tasks.stage import Attempt, Stage, StageResult


def store(job: JobState, index: PaperIndex, pending: PendingWrites) -> StageResult:
    """Write the job's papers (and any writes parked by earlier jobs) to the index.

    Qdrant being away degrades the job: the papers wait in Redis and the next
    job that reaches Qdrant writes them.
    """
    try:
        pending.flush(index)
        job.memory.stored = index.store(job.papers, query=job.request.query, job_id=job.job_id)
    except MemoryUnavailable as exc:
        if job.papers:
            pending.park(job.papers, query=job.request.query, job_id=job.job_id)
        job.add_warning(
            f"memory store deferred: {exc}; the papers will be written when Qdrant answers"
        )
        return StageResult(outcome="degraded", qdrant_failed=True)
    return StageResult(qdrant_failed=False, points_stored=job.memory.stored)


def run(job: JobState, resources: StageResources, attempt: Attempt) -> StageResult:
    return store(job, resources.index, resources.pending_writes)


STAGE = Stage(name="store", service="qdrant", run=run)
