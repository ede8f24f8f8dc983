"""The benchmark's world: a private Redis, fake arXiv and LLM, worker processes, a job runner."""

from __future__ import annotations

import random
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.bench.harness import BenchWorker, JobRunner
from tests.bench.upstreams import UpstreamProcess
from worker.local_redis import RedisServer

LLM_MODEL = "bench-summarizer"


@dataclass(frozen=True)
class WorkerShape:
    """How each worker process runs its tasks."""

    pool: str
    concurrency: int
    extra_env: tuple[tuple[str, str], ...] = ()


class FreshQueries:
    """Queries no earlier job asked: three random words, found in no other job's papers."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._salt = self._rng.randrange(1_000_000)

    def salt(self) -> int:
        """A number not handed out before: it makes a fan-out probe's papers new."""
        self._salt += 1
        return self._salt

    def next(self) -> str:
        words = ("".join(self._rng.choices(string.ascii_lowercase, k=8)) for _ in range(3))
        return " ".join(words)

    def requests(self, count: int, max_papers: int) -> list[dict[str, object]]:
        return [{"query": self.next(), "max_papers": max_papers} for _ in range(count)]


class BenchStack:
    """Everything a case needs, started once and torn down at the end (also on error)."""

    def __init__(self, work_dir: Path, shape: WorkerShape) -> None:
        self.work_dir = work_dir
        self.shape = shape
        self.redis = RedisServer(data_dir=work_dir / "redis")
        self.arxiv: UpstreamProcess | None = None
        self.llm: UpstreamProcess | None = None
        self.workers: list[BenchWorker] = []
        self._runner: JobRunner | None = None
        self._started = 0

    def __enter__(self) -> Self:
        try:
            self.redis.start()
            self.arxiv = UpstreamProcess("arxiv")
            self.llm = UpstreamProcess("openai")
            self._runner = JobRunner(self.redis.url)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.stop_workers()
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        for upstream in (self.arxiv, self.llm):
            if upstream is not None:
                upstream.stop()
        self.arxiv = self.llm = None
        self.redis.stop()

    @property
    def runner(self) -> JobRunner:
        assert self._runner is not None, "stack not started"
        return self._runner

    def upstreams(self) -> tuple[UpstreamProcess, UpstreamProcess]:
        assert self.arxiv is not None and self.llm is not None, "stack not started"
        return self.arxiv, self.llm

    def set_latencies(self, arxiv_seconds: float, llm_seconds: float) -> None:
        arxiv, llm = self.upstreams()
        arxiv.set_latency(arxiv_seconds)
        llm.set_latency(llm_seconds)

    def start_workers(self, count: int) -> list[BenchWorker]:
        """Start `count` more worker processes, each with a data directory (and Qdrant) of its own.

        Embedded Qdrant is a single-process store: two workers cannot share one.
        """
        arxiv, llm = self.upstreams()
        started = []
        for _ in range(count):
            self._started += 1
            number = self._started
            env = {
                "REDIS_URL": self.redis.url,
                "DATA_DIR": str(self.work_dir / f"worker-{number}"),
                "ARXIV_API_URL": arxiv.url,
                "ARXIV_MIN_INTERVAL_SECONDS": "0",
                "OPENAI_BASE_URL": llm.url,
                "OPENAI_API_KEY": "sk-bench-not-a-real-key",
                "LLM_MODEL": LLM_MODEL,
                **dict(self.shape.extra_env),
            }
            worker = BenchWorker(
                env=env,
                log_path=self.work_dir / f"worker-{number}.log",
                pool=self.shape.pool,
                concurrency=self.shape.concurrency,
                hostname=f"bench-{number}@%h",
            )
            self.workers.append(worker)
            worker.start()
            started.append(worker)
        return started

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def remove_work_dir(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
