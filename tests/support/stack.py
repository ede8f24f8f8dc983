"""A private research-arm stack: Redis, fake upstreams, real workers and a client on them.

Every suite that runs real workers stands on `Stack`: the integration and
failure suites (through thin pytest fixtures), the benchmark, the scale-out
figures and the evaluation (as a plain context manager)::

    with Stack(work_dir, arxiv=FakeArxivServer(), llm=FakeOpenAIServer()) as stack:
        worker = stack.start_worker(pool="prefork", concurrency=1)
        client = stack.client()
        client.result(client.submit({"query": "graph neural networks"}), timeout=60)

Redis is a child process of our own on a free loopback port, never a standard
one. The fakes are anything that serves on a URL and can be started, stopped
and told to wait (`Upstream`): the in-process `FakeArxivServer` and
`FakeOpenAIServer`, or the benchmark's out-of-process ones. A worker's
environment is, in order of precedence: the call's overrides, the stack's
`settings`, and the wiring to this stack's Redis and fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeAlias, TypeVar

import redis

from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.worker_process import WorkerProcess
from worker.client import ResearchClient
from worker.local_redis import RedisServer

LLM_MODEL = "fake-summarizer-1"
FAKE_API_KEY = "sk-test-not-a-real-key"

# Faults show in seconds, not minutes: quick retries and short upstream timeouts.
QUICK_RETRIES: Mapping[str, str] = {
    "RETRY_BACKOFF_SECONDS": "0.05",
    "RETRY_BACKOFF_MAX_SECONDS": "0.5",
    "ARXIV_TIMEOUT_SECONDS": "2",
    "LLM_TIMEOUT_SECONDS": "2",
    "LOG_LEVEL": "INFO",
}


class Upstream(Protocol):
    """A fake service that workers are pointed at; the stack starts and stops it."""

    latency_seconds: float
    """How long the fake waits before each answer."""

    @property
    def url(self) -> str:
        """The URL a worker is configured with (ARXIV_API_URL, OPENAI_BASE_URL)."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def clear(self) -> None:
        """Forget the requests recorded so far (and faults not served yet)."""
        ...


ArxivT = TypeVar("ArxivT", bound="Upstream | None")
LlmT = TypeVar("LlmT", bound="Upstream | None")


class WorkerFactory(Protocol):
    """Starts a worker on a stack: `start_worker("name", pool=..., KEY=value)`."""

    def __call__(
        self,
        name: str = ...,
        *,
        pool: str = ...,
        concurrency: int = ...,
        ready_timeout: float = ...,
        **env: str,
    ) -> WorkerProcess: ...


class Stack(Generic[ArxivT, LlmT]):
    """A private Redis and fake upstreams, and the workers and clients started on them.

    Everything is started on entering (or by `start`) and stopped on leaving
    (or by `close`), also when starting fails half-way.
    """

    def __init__(
        self,
        directory: Path,
        *,
        arxiv: ArxivT,
        llm: LlmT,
        settings: Mapping[str, str] | None = None,
        redis_options: Mapping[str, Any] | None = None,
        worker_module: str = "worker.cli",
    ) -> None:
        """Arguments:

        directory: where Redis keeps its data and each worker its data directory and log.
        arxiv, llm: the fakes workers are pointed at; None leaves the worker's own
            setting (no LLM at all, or the real arXiv URL for a worker that never searches).
        settings: what every worker of the stack is configured with, beyond the wiring.
        redis_options: extra `RedisServer` arguments (a password, appendonly, TLS files).
        worker_module: run as `python -m MODULE worker`: the product's CLI, or a
            wrapper that registers extra tasks first.
        """
        self.directory = directory
        self.arxiv = arxiv
        self.llm = llm
        self.settings = dict(settings or {})
        self.redis = RedisServer(data_dir=directory / "redis", **(redis_options or {}))
        self.worker_module = worker_module
        self.workers: list[WorkerProcess] = []
        self._clients: list[ResearchClient] = []
        self._worker_count = 0

    def start(self) -> None:
        try:
            self.redis.start()
            for upstream in self._upstreams():
                upstream.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the workers, close the clients, stop the fakes and Redis. Idempotent."""
        self.stop_workers()
        for client in self._clients:
            client.close()
        self._clients.clear()
        for upstream in self._upstreams():
            upstream.stop()
        self.redis.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def env(self, **overrides: str) -> dict[str, str]:
        """A worker's (or the CLI's) environment on this stack: wiring, settings, `overrides`."""
        wiring = {"REDIS_URL": self.redis.url}
        if self.arxiv is not None:
            wiring |= {"ARXIV_API_URL": self.arxiv.url, "ARXIV_MIN_INTERVAL_SECONDS": "0"}
        if self.llm is not None:
            wiring |= {
                "OPENAI_BASE_URL": self.llm.url,
                "OPENAI_API_KEY": FAKE_API_KEY,
                "LLM_MODEL": LLM_MODEL,
            }
        return {**wiring, **self.settings, **overrides}

    def worker(
        self, name: str = "worker", *, pool: str = "threads", concurrency: int = 8, **env: str
    ) -> WorkerProcess:
        """A worker, not started yet; `close` (or `stop_workers`) stops it.

        It is named `<name>-<n>@<host>`, n counting the stack's workers, and has a
        data directory of its own (its embedded Qdrant, heartbeat and metrics:
        two workers cannot share an embedded Qdrant) unless `env` sets DATA_DIR.
        """
        self._worker_count += 1
        label = f"{name}-{self._worker_count}"
        process = WorkerProcess(
            env=self.env(**{"DATA_DIR": str(self.directory / label), **env}),
            log_path=self.directory / f"{label}.log",
            concurrency=concurrency,
            pool=pool,
            hostname=f"{label}@%h",
            module=self.worker_module,
        )
        self.workers.append(process)
        return process

    def start_worker(
        self,
        name: str = "worker",
        *,
        pool: str = "threads",
        concurrency: int = 8,
        ready_timeout: float = 30.0,
        **env: str,
    ) -> WorkerProcess:
        """`worker(...)`, started; returns once it consumes (see `WorkerProcess.start`)."""
        process = self.worker(name, pool=pool, concurrency=concurrency, **env)
        process.start(ready_timeout)
        return process

    def stop_workers(self, timeout: float = 20.0) -> None:
        """Stop every worker of the stack (SIGTERM, then SIGKILL after `timeout` s)."""
        for process in self.workers:
            process.stop(timeout=timeout)
        self.workers.clear()

    def client(self) -> ResearchClient:
        """A client on the stack's Redis, as an orchestrator has; closed with the stack."""
        research = ResearchClient.from_url(self.redis.url)
        self._clients.append(research)
        return research

    def clear_fakes(self) -> None:
        """Fakes with no recorded requests, no faults left and no latency."""
        for upstream in self._upstreams():
            upstream.clear()
            upstream.latency_seconds = 0.0

    def reset(self) -> None:
        """An empty Redis (FLUSHALL) and cleared fakes, as between two tests."""
        with redis.Redis.from_url(self.redis.url) as plain:
            plain.flushall()
        self.clear_fakes()

    def _upstreams(self) -> list[Upstream]:
        return [upstream for upstream in (self.arxiv, self.llm) if upstream is not None]


# The test suites' stack: both fakes in this process, where tests inject faults.
LocalStack: TypeAlias = Stack[FakeArxivServer, FakeOpenAIServer]
