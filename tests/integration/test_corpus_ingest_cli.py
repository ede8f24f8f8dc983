"""`research-arm corpus ingest` as an operator runs it: killed and resumed, and via the queue.

Two workers on one queue share the chunks of a `--via-queue` ingest. Embedded
Qdrant is one process's store, so here each worker writes its own store and
the test checks that together they hold every record exactly once; a fleet
shares a Qdrant server (QDRANT_URL), which cannot run on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tasks.corpus_ingest import SnapshotFilter, checkpoint_path, load_checkpoint
from tests.support.snapshot_lines import snapshot_line, write_snapshot
from tests.support.worker_process import REPO_ROOT, WorkerProcess
from worker.local_redis import RedisServer

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli", "corpus", *args]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(env, *args),
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def stored_ids(path: Path) -> list[str]:
    client = QdrantClient(path=str(path))
    try:
        ids: list[str] = []
        offset = None
        while True:
            records, offset = client.scroll(
                "research_papers", limit=1000, offset=offset, with_payload=["arxiv_id"]
            )
            ids += [str((r.payload or {})["arxiv_id"]) for r in records]
            if offset is None:
                return ids
    finally:
        client.close()


def many_lines(count: int) -> list[str]:
    topics = ["graph networks", "language models", "protein folding", "quantum codes"]
    return [
        snapshot_line(
            f"2401.{n:05d}",
            title=f"Study {n} of {topics[n % 4]}",
            abstract=f"Paper number {n} about {topics[n % 4]} and {topics[(n + 1) % 4]}.",
        )
        for n in range(count)
    ]


def test_an_ingest_killed_mid_way_resumes_with_the_same_count_and_no_duplicate(
    tmp_path: Path,
) -> None:
    total = 3000
    snapshot = write_snapshot(tmp_path / "snapshot.jsonl.gz", many_lines(total))
    env = {"QDRANT_PATH": str(tmp_path / "qdrant"), "DATA_DIR": str(tmp_path / "data")}
    checkpoints = tmp_path / "data" / "ingest"
    process = subprocess.Popen(
        cli(env, "ingest", str(snapshot), "--chunk-lines", "100"),
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill it once a checkpoint shows work done, and well before the end.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        saved = load_checkpoint(checkpoints, snapshot, SnapshotFilter())
        if saved.next_line > 500:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(checkpoints, snapshot, SnapshotFilter()).next_line
    assert 500 < killed_at < total, "the ingest finished before it could be killed"

    resumed = run(env, "ingest", str(snapshot), "--chunk-lines", "100", "--json")

    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed_from"] == {str(snapshot): killed_at}
    ids = stored_ids(tmp_path / "qdrant")
    assert len(ids) == len(set(ids)) == total
    assert not checkpoint_path(checkpoints, snapshot, SnapshotFilter()).exists()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_an_ingest_via_the_queue_is_shared_by_two_workers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    total = 400
    snapshot = write_snapshot(tmp_path / "snapshot.jsonl", many_lines(total))
    workers = []
    try:
        for number in (1, 2):
            worker = WorkerProcess(
                env={
                    "REDIS_URL": redis_server.url,
                    "QDRANT_PATH": str(tmp_path / f"qdrant-{number}"),
                    "DATA_DIR": str(tmp_path / f"data-{number}"),
                },
                log_path=tmp_path / f"worker-{number}.log",
                concurrency=1,
                hostname=f"ingest-{number}@%h",
            )
            worker.start()
            workers.append(worker)

        done = run(
            {"REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path / "cli")},
            "ingest",
            str(snapshot),
            "--via-queue",
            "--chunk-lines",
            "20",
            "--json",
        )
    finally:
        for worker in workers:
            worker.stop()

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["lines"], summary["ingested"], summary["malformed"]) == (total, total, 0)
    shares = [stored_ids(tmp_path / f"qdrant-{number}") for number in (1, 2)]
    assert all(shares), [len(share) for share in shares]  # both workers took chunks
    together = shares[0] + shares[1]
    assert len(together) == len(set(together)) == total
