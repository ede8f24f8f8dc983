"""The failure suite's stack: a private Redis per module, the local arXiv and OpenAI servers,
workers started per test and stopped at its end, and the figures each fault records.

Timeouts are short so that faults show in seconds: a 6 s visibility timeout (kombu
sweeps for abandoned messages every second), 4 s/5 s soft/hard time limits, 2 s
upstream timeouts, backoffs of 50 ms up to 0.5 s.

Set RELIABILITY_REPORT to a file path and every fault test appends its row of the
README's reliability table there (`python -m tests.failure.report` does this).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.failure.tally import FaultRow
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.worker_process import WorkerProcess
from worker.client import ResearchClient
from worker.local_redis import RedisServer

LLM_MODEL = "fake-summarizer-1"
VISIBILITY_TIMEOUT = 6
SOFT_TIME_LIMIT = 4

# A worker of this suite, unless a test says otherwise.
FAST_ENV = {
    "ARXIV_MIN_INTERVAL_SECONDS": "0",
    "OPENAI_API_KEY": "sk-test-not-a-real-key",
    "LLM_MODEL": LLM_MODEL,
    "RETRY_BACKOFF_SECONDS": "0.05",
    "RETRY_BACKOFF_MAX_SECONDS": "0.5",
    "ARXIV_TIMEOUT_SECONDS": "2",
    "LLM_TIMEOUT_SECONDS": "2",
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT),
    "TASK_SOFT_TIME_LIMIT_SECONDS": str(SOFT_TIME_LIMIT),
    "TASK_TIME_LIMIT_SECONDS": str(SOFT_TIME_LIMIT + 1),
    "WORKER_SOFT_SHUTDOWN_TIMEOUT_SECONDS": "1",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
    # These tests time faults against a 4 s soft limit and seconds-long
    # waits; the embedding model's ~1 s of CPU per fresh job on two shared
    # cores would make them race the clock. The faults do not depend on what
    # the vectors mean, and the integration suite runs the real model.
    "EMBEDDINGS": "hashing",
}


class Stack:
    """One module's Redis and fake upstreams; `env()` is a worker environment for them."""

    def __init__(
        self,
        directory: Path,
        redis_server: RedisServer,
        arxiv: FakeArxivServer,
        llm: FakeOpenAIServer,
    ) -> None:
        self.directory = directory
        self.redis = redis_server
        self.arxiv = arxiv
        self.llm = llm

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            **FAST_ENV,
            "REDIS_URL": self.redis_url,
            "ARXIV_API_URL": self.arxiv.url,
            "OPENAI_BASE_URL": self.llm.base_url,
            **overrides,
        }

    def reset(self) -> None:
        """An empty Redis and fakes with no requests, faults or latency (between tests)."""
        with redis.Redis.from_url(self.redis_url) as client:
            client.flushall()
        for server in (self.arxiv, self.llm):
            server.clear()
            server.latency_seconds = 0.0


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("failure")


@pytest.fixture(scope="module")
def arxiv_corpus() -> None:
    """The fake arXiv's corpus; None is the default synthetic one (a module may override)."""
    return None


@pytest.fixture(scope="module")
def redis_options() -> dict[str, object]:
    """Extra RedisServer arguments for the module's Redis (a module may override)."""
    return {}


@pytest.fixture(scope="module")
def stack(
    module_dir: Path, arxiv_corpus: object, redis_options: dict[str, object]
) -> Iterator[Stack]:
    server = RedisServer(data_dir=module_dir / "redis", **redis_options)  # type: ignore[arg-type]
    with contextlib.ExitStack() as cleanup:
        server.start()
        cleanup.callback(server.stop)
        arxiv = cleanup.enter_context(FakeArxivServer(arxiv_corpus))  # type: ignore[arg-type]
        llm = cleanup.enter_context(FakeOpenAIServer())
        yield Stack(module_dir, server, arxiv, llm)


@pytest.fixture
def fresh_stack(stack: Stack) -> Stack:
    stack.reset()
    return stack


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(fresh_stack: Stack, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start a worker on the module's stack: `start_worker("name", pool=..., KEY=value)`.

    Each worker gets its own data directory (so its own embedded Qdrant) unless
    the test passes DATA_DIR or QDRANT_*; every worker is stopped at the test's end.
    """
    started: list[WorkerProcess] = []
    numbers = itertools.count(1)

    def start(
        name: str = "worker",
        *,
        pool: str = "threads",
        concurrency: int = 4,
        ready_timeout: float = 30.0,
        **env: str,
    ) -> WorkerProcess:
        label = f"{name}-{next(numbers)}"
        worker = WorkerProcess(
            env=fresh_stack.env(DATA_DIR=str(tmp_path / label), **env),
            log_path=tmp_path / f"{label}.log",
            concurrency=concurrency,
            pool=pool,
            hostname=f"{label}@%h",
        )
        started.append(worker)
        worker.start(ready_timeout)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10)


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[ResearchClient]:
    research = ResearchClient.from_url(stack.redis_url)
    yield research
    research.close()


# --- The reliability table ------------------------------------------------------------


@pytest.fixture
def record_fault(request: pytest.FixtureRequest) -> Callable[[FaultRow], None]:
    """Append a fault's figures to $RELIABILITY_REPORT (a JSON-lines file), when it is set."""

    def record(row: FaultRow) -> None:
        target = os.environ.get("RELIABILITY_REPORT")
        if not target:
            return
        entry = {**row.as_dict(), "test": request.node.nodeid}
        with Path(target).open("a", encoding="utf-8") as report:
            report.write(json.dumps(entry) + "\n")

    return record
