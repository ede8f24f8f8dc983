"""The Redis key KEDA watches is where a submitted job waits, and where a worker takes it from.

Against a real Redis: a job submitted while no worker runs lengthens exactly
the list named in the ScaledObject, and a worker started afterwards empties it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.deploy.manifests import find
from tests.support.worker_process import WorkerProcess
from worker.client import ResearchClient

pytestmark = pytest.mark.integration


@pytest.fixture
def keda_list_name() -> str:
    (trigger,) = find("ScaledObject", "research-arm-worker")["spec"]["triggers"]
    return str(trigger["metadata"]["listName"])


@pytest.fixture
def client(redis_url: str) -> Iterator[ResearchClient]:
    research = ResearchClient.from_url(redis_url)
    yield research
    research.close()


def lists_holding_messages(broker: redis.Redis) -> dict[str, int]:
    return {
        key.decode(): int(broker.llen(key))
        for key in broker.scan_iter()
        if broker.type(key) == b"list"
    }


def test_a_waiting_job_is_in_the_keda_list_and_a_worker_consumes_it_from_there(
    redis_url: str, client: ResearchClient, keda_list_name: str, tmp_path: Path
) -> None:
    broker = redis.Redis.from_url(redis_url)
    # An invalid request: the worker fails it at once, no upstream needed.
    job_id = client.submit({"query": "no"})

    assert lists_holding_messages(broker) == {keda_list_name: 1}

    with WorkerProcess(
        env={"REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data")},
        log_path=tmp_path / "worker.log",
        concurrency=1,
    ):
        deadline = time.monotonic() + 30
        while not client.status(job_id).finished and time.monotonic() < deadline:
            time.sleep(0.1)

        assert client.status(job_id).state == "FAILURE"
        assert client.status(job_id).error_type == "InvalidRequest"
        assert broker.llen(keda_list_name) == 0
    broker.close()
