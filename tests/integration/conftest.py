"""A real stack per test module: a private Redis, local arXiv and OpenAI servers, real workers."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.worker_process import WorkerProcess
from worker.client import ResearchClient
from worker.local_redis import RedisServer

pytestmark = pytest.mark.integration

LLM_MODEL = "fake-summarizer-1"


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
def stack_redis(module_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=module_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def arxiv_server() -> Iterator[FakeArxivServer]:
    with FakeArxivServer() as server:
        yield server


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    # Module-scoped servers start each test with no recorded requests, no faults, no latency.
    for name in ("arxiv_server", "llm_server"):
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            server.clear()
            server.latency_seconds = 0.0


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture(scope="module")
def worker_env(
    stack_redis: RedisServer,
    arxiv_server: FakeArxivServer,
    llm_server: FakeOpenAIServer,
    module_dir: Path,
) -> dict[str, str]:
    return {
        "REDIS_URL": stack_redis.url,
        "DATA_DIR": str(module_dir / "data"),
        "ARXIV_API_URL": arxiv_server.url,
        "ARXIV_MIN_INTERVAL_SECONDS": "0",
        "OPENAI_BASE_URL": llm_server.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "LLM_MODEL": LLM_MODEL,
        "RETRY_BACKOFF_SECONDS": "0.05",
        "RETRY_BACKOFF_MAX_SECONDS": "0.5",
        "ARXIV_TIMEOUT_SECONDS": "2",
        "LLM_TIMEOUT_SECONDS": "2",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def start_worker(worker_env: dict[str, str], module_dir: Path) -> Iterator[WorkerFactory]:
    """Start a worker with the module's environment plus overrides; all are stopped at the end."""
    started: list[WorkerProcess] = []
    numbers = itertools.count(1)

    def start(**overrides: str) -> WorkerProcess:
        number = next(numbers)
        worker = WorkerProcess(
            env={**worker_env, **overrides},
            log_path=module_dir / f"worker-{number}.log",
            hostname=f"research-test-{number}@%h",
        )
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def client(stack_redis: RedisServer) -> Iterator[ResearchClient]:
    research = ResearchClient.from_url(stack_redis.url)
    yield research
    research.close()
