"""ResearchClient.status reads a job's state and its data from one record of the backend.

The backend is Celery's in-memory cache, shared by the process: each test uses a job id of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from tasks.errors import InvalidRequest
from worker.client import ResearchClient


@pytest.fixture
def client() -> Iterator[ResearchClient]:
    app = Celery("client-test", broker="memory://", backend="cache+memory://")
    research_client = ResearchClient(app)
    try:
        yield research_client
    finally:
        research_client.close()


def test_status_shows_the_stage_while_the_job_runs(client: ResearchClient) -> None:
    client.app.backend.store_result(
        "job-running", {"stage": "summarize", "done": 2, "total": 5}, "PROGRESS"
    )

    status = client.status("job-running")

    assert (status.state, status.stage, status.done, status.total) == (
        "PROGRESS",
        "summarize",
        2,
        5,
    )


def test_status_after_the_response_is_written_carries_no_stage(client: ResearchClient) -> None:
    backend = client.app.backend
    backend.store_result("job-done", {"stage": "store", "done": 0, "total": 1}, "PROGRESS")
    backend.store_result("job-done", {"papers": [], "total_found": 0}, "SUCCESS")

    status = client.status("job-done")

    assert status.state == "SUCCESS"
    assert status.stage is None
    assert status.finished


def test_status_of_a_failed_job_names_the_error(client: ResearchClient) -> None:
    client.app.backend.mark_as_failure("job-failed", InvalidRequest("max_papers: too large"))

    status = client.status("job-failed")

    assert status.state == "FAILURE"
    assert status.error_type == "InvalidRequest"
    assert status.error is not None and "max_papers" in status.error
