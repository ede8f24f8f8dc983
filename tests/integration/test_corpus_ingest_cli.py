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
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tasks.corpus_ingest import SnapshotFilter, checkpoint_path, load_checkpoint
from tests.support.snapshot_lines import snapshot_line, write_snapshot
from tests.support.stack import Stack
from tests.support.worker_process import REPO_ROOT, run_cli

pytestmark = pytest.mark.integration


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
    ingest = ["corpus", "ingest", str(snapshot), "--chunk-lines", "100"]
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *ingest],
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

    resumed = run_cli(*ingest, "--json", env=env)

    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed_from"] == {str(snapshot): killed_at}
    ids = stored_ids(tmp_path / "qdrant")
    assert len(ids) == len(set(ids)) == total
    assert not checkpoint_path(checkpoints, snapshot, SnapshotFilter()).exists()


def test_an_ingest_via_the_queue_is_shared_by_two_workers(tmp_path: Path) -> None:
    total = 400
    snapshot = write_snapshot(tmp_path / "snapshot.jsonl", many_lines(total))
    with Stack(tmp_path, arxiv=None, llm=None) as stack:
        for number in (1, 2):
            stack.start_worker(
                "ingest", concurrency=1, QDRANT_PATH=str(tmp_path / f"qdrant-{number}")
            )

        done = run_cli(
            "corpus",
            "ingest",
            str(snapshot),
            "--via-queue",
            "--chunk-lines",
            "20",
            "--json",
            env=stack.env(DATA_DIR=str(tmp_path / "cli")),
        )

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["lines"], summary["ingested"], summary["malformed"]) == (total, total, 0)
    shares = [stored_ids(tmp_path / f"qdrant-{number}") for number in (1, 2)]
    assert all(shares), [len(share) for share in shares]  # both workers took chunks
    together = shares[0] + shares[1]
    assert len(together) == len(set(together)) == total
