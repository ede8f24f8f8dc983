"""The product's job path, private to one evaluation run.

A Redis of its own on a free port, the fake arXiv server (in a thread of this
process) serving the shared real records, and one `research-arm worker`
process per query, each with a fresh data directory: the Qdrant memory of one
query (or of an earlier run) never feeds another. The worker reaches arXiv
through its real client, rate gate (ARXIV_MIN_INTERVAL_SECONDS=0) and cache,
and is driven through Celery exactly as an orchestrator drives it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.harness import JobRunner
from tests.eval.records import EvalRecord, write_snapshot_jsonl
from tests.support import RecordedRequest
from tests.support.arxiv_corpus import CorpusPaper
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.stack import Stack
from tests.support.worker_process import run_cli

JOB_TIMEOUT_SECONDS = 120.0
INGEST_TIMEOUT_SECONDS = 600.0


class CorpusIngestFailed(RuntimeError):
    """The product's corpus ingest did not run (or this checkout has none)."""


@dataclass(frozen=True)
class JobRun:
    """One research job as the evaluation saw it."""

    state: str
    result: Any
    arxiv_requests: tuple[RecordedRequest, ...]
    """What the worker asked the fake arXiv for during this job."""
    latency_seconds: float

    @property
    def ranking(self) -> list[str]:
        """The arXiv ids the job returned, best first ([] if the job failed)."""
        if self.state != "SUCCESS" or not isinstance(self.result, dict):
            return []
        return [str(paper["arxiv_id"]) for paper in self.result.get("papers", [])]

    @property
    def embedding_model(self) -> str:
        """The embedder's name as the job's provenance records it."""
        if not isinstance(self.result, dict):
            return "?"
        models = self.result.get("provenance", {}).get("models", {})
        return str(models.get("embedding", "?"))


class EvalStack(Stack[FakeArxivServer, None]):
    """Redis, fake arXiv and a job runner; `run_job` starts a fresh worker per job.

    There is no LLM: summaries are extractive, and ranking is what is measured.
    """

    def __init__(
        self,
        corpus: Sequence[CorpusPaper],
        worker_env: Mapping[str, str] | None = None,
        *,
        work_dir: Path | None = None,
        seed_corpus: Sequence[EvalRecord] = (),
    ) -> None:
        """Arguments:

        corpus: the papers the fake arXiv serves.
        worker_env: extra worker settings (e.g. EMBEDDINGS=hashing).
        work_dir: where Redis and the workers keep their data; a temporary folder
            (removed at the end) if None.
        seed_corpus: records ingested once into a local corpus that every job's
            worker starts with (`research-arm corpus ingest`, where the checkout has it).
        """
        self._own_work_dir = work_dir is None
        directory = work_dir or Path(tempfile.mkdtemp(prefix="research-arm-eval-"))
        super().__init__(directory, arxiv=FakeArxivServer(corpus), llm=None, settings=worker_env)
        self.seed_corpus = seed_corpus
        self._runner: JobRunner | None = None
        self._jobs = 0
        self._seed: Path | None = None
        # A finished job's worker shuts down while the next one starts.
        self._stopping: list[threading.Thread] = []

    def start(self) -> None:
        super().start()
        try:
            self._runner = JobRunner(self.redis_url)
            if self.seed_corpus:
                self._seed = self._ingest(self.seed_corpus)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for thread in self._stopping:
            thread.join()
        self._stopping.clear()
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        super().close()
        if self._own_work_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _data_env(data_dir: Path) -> dict[str, str]:
        return {"DATA_DIR": str(data_dir), "QDRANT_PATH": str(data_dir / "qdrant")}

    def _ingest(self, records: Sequence[EvalRecord]) -> Path:
        """A data directory whose corpus holds `records`, built once by the product's ingest."""
        seed = self.directory / "corpus-seed"
        snapshot = write_snapshot_jsonl(records, self.directory / "snapshot" / "records.jsonl")
        done = run_cli(
            "corpus",
            "ingest",
            str(snapshot),
            env=self.env(**self._data_env(seed)),
            timeout=INGEST_TIMEOUT_SECONDS,
        )
        if done.returncode != 0:
            raise CorpusIngestFailed(
                f"`research-arm corpus ingest` failed (exit {done.returncode}); does this"
                f" checkout have a local corpus?\n{done.stderr[-2000:]}"
            )
        return seed

    def run_job(self, request: Mapping[str, Any]) -> JobRun:
        """Run one research request on a worker of its own; a failed job is returned, not raised."""
        assert self._runner is not None, "stack not started"
        self._jobs += 1
        data_dir = self.directory / f"job-{self._jobs}"
        if self._seed is not None:
            # Each job starts from the same ingested corpus: what one job stores
            # never reaches the next.
            shutil.copytree(self._seed, data_dir)
        worker = self.start_worker(
            "eval", concurrency=1, ready_timeout=60.0, **self._data_env(data_dir)
        )
        try:
            self.arxiv.clear()
            (outcome,) = self._runner.run([dict(request)], timeout=JOB_TIMEOUT_SECONDS)
            requests = tuple(r for r in self.arxiv.requests if r.path.rstrip("/") == "/api/query")
        finally:
            stopper = threading.Thread(target=worker.stop, name=f"stop-eval-{self._jobs}")
            stopper.start()
            self._stopping.append(stopper)
        return JobRun(outcome.state, outcome.result, requests, outcome.latency)

    def served_papers(self, request: RecordedRequest) -> bytes:
        """The feed the fake arXiv answers `request` with (the same answer, asked again)."""
        return self.arxiv.search(request.params).encode()
