"""The benchmark's world: the stack with its fakes out of process, and a job runner on it."""

from __future__ import annotations

import random
import shutil
import string
from dataclasses import dataclass
from pathlib import Path

from tests.bench.harness import JobRunner
from tests.bench.upstreams import UpstreamProcess
from tests.support.stack import Stack
from tests.support.worker_process import WorkerProcess


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


class BenchStack(Stack[UpstreamProcess, UpstreamProcess]):
    """Everything a case needs, started once and torn down at the end (also on error).

    The fakes run in processes of their own, so their CPU is not the measuring
    process's; workers run the product's defaults, shaped by `shape`, and also
    register the benchmark's own tasks (`tests.bench.worker_main`).
    """

    def __init__(self, work_dir: Path, shape: WorkerShape) -> None:
        super().__init__(
            work_dir,
            arxiv=UpstreamProcess("arxiv"),
            llm=UpstreamProcess("openai"),
            settings=dict(shape.extra_env),
            worker_module="tests.bench.worker_main",
        )
        self.work_dir = work_dir
        self.shape = shape
        self._runner: JobRunner | None = None

    def start(self) -> None:
        super().start()
        try:
            self._runner = JobRunner(self.redis_url)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        super().close()

    @property
    def runner(self) -> JobRunner:
        assert self._runner is not None, "stack not started"
        return self._runner

    def upstreams(self) -> tuple[UpstreamProcess, UpstreamProcess]:
        return self.arxiv, self.llm

    def set_latencies(self, arxiv_seconds: float, llm_seconds: float) -> None:
        self.arxiv.latency_seconds = arxiv_seconds
        self.llm.latency_seconds = llm_seconds

    def start_workers(self, count: int) -> list[WorkerProcess]:
        """Start `count` more worker processes of the stack's shape, one after another."""
        return [
            self.start_worker("bench", pool=self.shape.pool, concurrency=self.shape.concurrency)
            for _ in range(count)
        ]

    def remove_work_dir(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
