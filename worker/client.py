"""A small client for Python orchestrators: submit a job, follow it, fetch its result.

Orchestrators in other languages send the same message themselves (see the
README's task contract); this is a convenience over `send_task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.result import AsyncResult

# Imported so Celery rebuilds our own exception classes (and their messages)
# from a failed job's result instead of anonymous stand-ins.
import tasks.errors  # noqa: F401
from schemas.research import ResearchRequest, ResearchResponse
from tasks.constants import QUEUE, TASK_EXECUTE
from worker.redis_tls import redis_ssl_options


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands. `stage`, `done` and `total` are set while it is in PROGRESS."""

    job_id: str
    state: str
    stage: str | None = None
    done: int | None = None
    total: int | None = None
    error_type: str | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("SUCCESS", "FAILURE", "REVOKED")


class JobFailed(Exception):
    """The job ended in FAILURE; `error_type` is `InvalidRequest`, `UpstreamUnavailable`, …"""

    def __init__(self, job_id: str, error_type: str, message: str) -> None:
        super().__init__(f"job {job_id} failed with {error_type}: {message}")
        self.job_id = job_id
        self.error_type = error_type
        self.message = message


def celery_client(broker_url: str) -> Celery:
    """A Celery app for sending jobs and reading results only (JSON, like the worker)."""
    # A rediss:// URL's certificate is checked even if the URL does not ask.
    tls = redis_ssl_options(broker_url)
    return Celery(
        "research_arm_client",
        broker=broker_url,
        backend=broker_url,
        set_as_current=False,
        config_source={
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "result_accept_content": ["json"],
            "task_send_sent_event": True,
            "broker_connection_retry_on_startup": True,
            "broker_use_ssl": tls,
            "redis_backend_use_ssl": tls,
        },
    )


class ResearchClient:
    def __init__(self, app: Celery) -> None:
        self.app = app

    @classmethod
    def from_url(cls, broker_url: str) -> ResearchClient:
        return cls(celery_client(broker_url))

    def close(self) -> None:
        self.app.close()

    def submit(self, request: ResearchRequest | dict[str, Any], job_id: str | None = None) -> str:
        """Enqueue a job and return its id. A dict is sent as given: the worker validates it."""
        payload = (
            request.model_dump(mode="json", exclude_defaults=True)
            if isinstance(request, ResearchRequest)
            else request
        )
        result = self.app.send_task(
            TASK_EXECUTE, kwargs={"request": payload}, queue=QUEUE, task_id=job_id
        )
        return str(result.id)

    def status(self, job_id: str) -> JobStatus:
        # One read of the job's record: a state and data read apart could pair
        # PROGRESS with the final response written in between.
        meta = self.app.backend.get_task_meta(job_id)
        state, info = meta["status"], meta.get("result")
        if state == "PROGRESS" and isinstance(info, dict):
            return JobStatus(
                job_id,
                state,
                stage=info.get("stage"),
                done=info.get("done"),
                total=info.get("total"),
            )
        if state == "FAILURE":
            return JobStatus(job_id, state, error_type=type(info).__name__, error=str(info))
        return JobStatus(job_id, state)

    def result(self, job_id: str, timeout: float | None = None) -> ResearchResponse:
        """Wait for the job (up to `timeout` seconds) and return its response; raises JobFailed."""
        async_result = AsyncResult(job_id, app=self.app)
        try:
            value = async_result.get(timeout=timeout, propagate=True)
        except Exception as exc:
            if async_result.state == "FAILURE":
                raise JobFailed(job_id, type(exc).__name__, str(exc)) from exc
            raise
        return ResearchResponse.model_validate(value)
