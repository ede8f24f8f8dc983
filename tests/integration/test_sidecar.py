"""The health sidecar beside a real prefork worker: healthy, frozen, without Redis, and back.

One stack per module: a private Redis, the fake arXiv and OpenAI servers, a
prefork worker (one child, which owns the embedded Qdrant) and the sidecar
process on a free port. The Redis outage comes last: it empties Redis.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tasks.rate_gate import ArxivRateGate
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.polling import eventually
from tests.support.stack import LocalStack, WorkerFactory
from tests.support.worker_process import REPO_ROOT, WorkerProcess, run_cli
from worker.client import ResearchClient
from worker.local_redis import free_port

pytestmark = pytest.mark.integration

HEARTBEAT_TTL = 3.0
JOB_TIMEOUT = 60
ENDPOINTS = ("/livez", "/readyz", "/health", "/capabilities", "/metrics")


@pytest.fixture(scope="module")
def sidecar_env(worker_env: dict[str, str], module_dir: Path) -> dict[str, str]:
    return {
        **worker_env,
        "HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "HEARTBEAT_TTL_SECONDS": str(HEARTBEAT_TTL),
        "HEALTH_CHECK_TIMEOUT_SECONDS": "0.5",
        # The gate on, briefly: /health reports its cooldown from Redis.
        "ARXIV_MIN_INTERVAL_SECONDS": "1",
        "DATA_DIR": str(module_dir / "sidecar-data"),
    }


@pytest.fixture(scope="module")
def worker(start_worker: WorkerFactory, sidecar_env: dict[str, str]) -> Iterator[WorkerProcess]:
    # prefork: metrics are then recorded in a child process, not in the one that started.
    process = start_worker("prefork", pool="prefork", concurrency=1, **sidecar_env)
    yield process
    process.send_signal(signal.SIGCONT)  # in case a test failed while it was frozen
    process.stop()


@pytest.fixture(scope="module")
def sidecar(sidecar_env: dict[str, str], module_dir: Path, worker: WorkerProcess) -> Iterator[str]:
    """The sidecar's base URL."""
    port = free_port()
    log = (module_dir / "sidecar.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "sidecar", "--host=127.0.0.1", f"--port={port}"],
        cwd=REPO_ROOT,
        env={**os.environ, "LOG_FORMAT": "json", **sidecar_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: get(f"{url}/livez")[0] == 200, timeout=15, what="sidecar up")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def get(url: str) -> tuple[int, Any]:
    """Status and body (parsed JSON, or text for /metrics); 0 if nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except OSError:
        return 0, None
    text = raw.decode()
    return status, text if url.endswith("/metrics") else json.loads(text)


def metric(text: str, sample_name: str, **labels: str) -> float | None:
    """The value of the sample named so whose labels include `labels`, if there is one."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


def scrape(sidecar: str) -> str:
    status, text = get(f"{sidecar}/metrics")
    assert status == 200
    assert isinstance(text, str)
    return text


def check_command(env: dict[str, str]) -> int:
    return run_cli("check", env=env, timeout=60).returncode


def test_a_healthy_worker_is_alive_ready_healthy_and_described(
    worker: WorkerProcess, sidecar: str, arxiv_server: FakeArxivServer
) -> None:
    status, livez = get(f"{sidecar}/livez")
    assert status == 200 and livez["worker"]["pid"] == worker.pid and livez["worker"]["consuming"]
    status, readyz = get(f"{sidecar}/readyz")
    assert status == 200 and readyz["status"] == "ready"
    status, health = get(f"{sidecar}/health")
    assert status == 200 and health["status"] == "healthy" and health["arm_id"] == "research"
    assert {name: dep["status"] for name, dep in health["dependencies"].items()} == {
        "worker": "ok",
        "redis": "ok",
        "qdrant": "ok",
        "corpus": "ok",
        "llm": "ok",
        "arxiv_gate": "ok",
    }
    status, manifest = get(f"{sidecar}/capabilities")
    assert status == 200 and manifest["task_name"] == "research.execute"
    assert manifest["input_schema"]["title"] == "ResearchRequest"
    text = scrape(sidecar)
    assert metric(text, "celery_worker_up") == 1
    assert metric(text, "research_arm_worker_ready") == 1
    assert metric(text, "celery_queue_length", queue_name="research") == 0
    assert arxiv_server.requests == []


def test_metrics_recorded_in_a_prefork_child_reach_the_scrape(
    worker: WorkerProcess, sidecar: str, client: ResearchClient, sidecar_env: dict[str, str]
) -> None:
    job_id = client.submit({"query": "graph neural networks", "max_papers": 2})
    client.result(job_id, timeout=JOB_TIMEOUT)

    text = scrape(sidecar)
    assert metric(text, "research_arm_jobs_total", outcome="succeeded") == 1
    assert metric(text, "celery_task_succeeded_total", name="research.store") == 1
    assert metric(text, "research_arm_stage_duration_seconds_count", stage="search") == 1
    assert metric(text, "research_arm_arxiv_requests_total") == 1
    assert metric(text, "research_arm_llm_calls_total") == 2
    assert metric(text, "research_arm_qdrant_points_written_total") == 2
    # The values came from the pool's child, not from the process that started.
    metrics_dir = Path(sidecar_env["DATA_DIR"]) / "metrics"
    writers = {int(path.stem.rpartition("_")[2]) for path in metrics_dir.glob("*.db")}
    children = {child.pid for child in psutil.Process(worker.pid).children()}
    assert writers and writers <= children and worker.pid not in writers


def test_the_queue_depth_counts_a_message_in_flight(
    sidecar: str, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    arxiv_server.latency_seconds = 1.5  # the search stage holds its message this long
    job_id = client.submit({"query": "protein folding with diffusion", "max_papers": 2})

    def in_flight() -> bool:
        text = scrape(sidecar)
        unacked = metric(text, "research_arm_queue_unacked", queue_name="research")
        return unacked == 1 and metric(text, "research_arm_queue_depth") == 1

    eventually(in_flight, timeout=10, what="one unacknowledged message")
    client.result(job_id, timeout=JOB_TIMEOUT)
    assert metric(scrape(sidecar), "research_arm_queue_depth") == 0


def test_probes_never_call_arxiv_and_read_the_gates_cooldown_from_redis(
    stack: LocalStack, sidecar: str, arxiv_server: FakeArxivServer
) -> None:
    for _ in range(3):
        for path in ENDPOINTS:
            assert get(f"{sidecar}{path}")[0] == 200
    # A search elsewhere took the gate's next slot: the next one is 3 s away.
    with redis.Redis.from_url(stack.redis_url) as shared:
        ArxivRateGate(shared, min_interval_seconds=3).reserve()

    _, health = get(f"{sidecar}/health")
    cooldown = metric(scrape(sidecar), "research_arm_arxiv_gate_cooldown_seconds")

    assert health["dependencies"]["arxiv_gate"]["detail"].startswith("cooling down")
    assert cooldown is not None and 0 < cooldown <= 3
    assert arxiv_server.requests == []


def test_a_frozen_worker_is_dead_until_it_thaws(
    worker: WorkerProcess, sidecar: str, client: ResearchClient, sidecar_env: dict[str, str]
) -> None:
    worker.send_signal(signal.SIGSTOP)
    try:
        eventually(
            lambda: get(f"{sidecar}/livez")[0] == 503,
            timeout=HEARTBEAT_TTL + 3,
            what="/livez fails for a frozen worker",
        )
        assert get(f"{sidecar}/readyz")[0] == 503
        assert get(f"{sidecar}/health")[1]["dependencies"]["worker"]["status"] == "down"
        assert check_command(sidecar_env) == 1
        job_id = client.submit({"query": "frozen workers wait in line", "max_papers": 1})
        eventually(
            lambda: metric(scrape(sidecar), "celery_queue_length") == 1,
            timeout=5,
            what="the job waits in the queue",
        )
        assert metric(scrape(sidecar), "celery_worker_up") == 0
    finally:
        worker.send_signal(signal.SIGCONT)

    eventually(lambda: get(f"{sidecar}/livez")[0] == 200, timeout=5, what="alive again")
    assert check_command(sidecar_env) == 0
    client.result(job_id, timeout=JOB_TIMEOUT)


def test_a_broker_outage_makes_the_worker_unready_but_never_dead(
    stack: LocalStack, sidecar: str, arxiv_server: FakeArxivServer
) -> None:
    stack.redis.stop()
    try:
        eventually(lambda: get(f"{sidecar}/readyz")[0] == 503, timeout=5, what="/readyz fails")
        # Longer than the heartbeat's TTL: the worker keeps beating without a broker.
        watch_until = time.monotonic() + 2 * HEARTBEAT_TTL
        while time.monotonic() < watch_until:
            status, livez = get(f"{sidecar}/livez")
            assert status == 200, livez
            time.sleep(0.5)
        status, health = get(f"{sidecar}/health")
        assert status == 503 and health["dependencies"]["redis"]["status"] == "down"
        eventually(
            lambda: not get(f"{sidecar}/livez")[1]["worker"]["consuming"],
            timeout=10,
            what="the worker noticed the broker is gone",
        )
        text = scrape(sidecar)
        assert metric(text, "research_arm_dependency_up", dependency="redis") == 0
        assert metric(text, "celery_worker_up") == 1
        assert metric(text, "celery_queue_length") is None  # unknown, not zero
    finally:
        stack.redis.start()

    eventually(
        lambda: get(f"{sidecar}/readyz")[0] == 200,
        timeout=45,
        what="ready again once the worker reconnected",
    )
    assert arxiv_server.requests == []
