"""An orchestrator with no Celery at all: redis-cli pushes the message and reads the result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import LocalStack, WorkerFactory
from worker.local_redis import find_redis_server

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "submit-with-redis-cli.sh"


def redis_cli() -> str:
    found = shutil.which("redis-cli")
    return found or str(find_redis_server().with_name("redis-cli"))


def run_script(redis_url: str, request: dict[str, object]) -> dict[str, object]:
    completed = subprocess.run(
        [str(SCRIPT), json.dumps(request)],
        env={**os.environ, "REDIS_URL": redis_url, "REDIS_CLI": redis_cli(), "WAIT_SECONDS": "60"},
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    meta: dict[str, object] = json.loads(completed.stdout)
    return meta


def test_the_documented_redis_cli_message_runs_a_job(
    start_worker: WorkerFactory, stack: LocalStack
) -> None:
    start_worker()

    meta = run_script(stack.redis_url, {"query": "quantum error correction", "max_papers": 2})

    assert meta["status"] == "SUCCESS"
    result = meta["result"]
    # The result is a JSON object, not a string holding JSON.
    assert isinstance(result, dict)
    assert len(result["papers"]) == 2
    assert result["provenance"]["job_id"] == meta["task_id"]


def test_a_bad_request_from_redis_cli_fails_with_invalid_request(
    start_worker: WorkerFactory, stack: LocalStack
) -> None:
    start_worker()

    meta = run_script(stack.redis_url, {"query": "ok query", "max_papers": 99})

    assert meta["status"] == "FAILURE"
    assert meta["result"]["exc_type"] == "InvalidRequest"  # type: ignore[index]
    assert "max_papers" in str(meta["result"]["exc_message"])  # type: ignore[index]
