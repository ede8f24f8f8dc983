"""Jobs over an ingested corpus: arXiv only for what the corpus cannot hold.

The module ingests a small snapshot (computer-science papers up to a
watermark of 2025-06-30, ingested with `--categories cs.*`) with the real CLI,
then runs a real worker on that embedded store, the fake arXiv beside it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.support import Fault
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.snapshot_lines import snapshot_line, write_snapshot
from tests.support.stack import WorkerFactory
from tests.support.worker_process import WorkerProcess, run_cli
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

JOB_TIMEOUT = 60
WATERMARK = date(2025, 6, 30)
CORPUS = [
    snapshot_line(
        "2501.00001",
        title="Graph neural networks for molecular property prediction",
        abstract="Message passing over atoms and bonds predicts molecular properties.",
        categories="cs.LG",
        versions=[date(2025, 1, 10)],
    ),
    snapshot_line(
        "2502.00002",
        title="Equivariant graph networks for molecules",
        abstract="Graph neural networks respecting rotations improve molecular energies.",
        categories="cs.LG physics.chem-ph",
        versions=[date(2025, 2, 3)],
    ),
    snapshot_line(
        "2503.00003",
        title="Pronoun resolution in long documents",
        abstract="Coreference resolution across chapters with memory-augmented readers.",
        categories="cs.CL",
        versions=[date(2025, 3, 4)],
    ),
    snapshot_line(
        "2506.00004",
        title="Spectral graph theory for network science",
        abstract="Eigenvalues of graph Laplacians describe communities in networks.",
        categories="math.CO",  # left out by the cs.* ingest
        versions=[date(2025, 6, 1)],
    ),
    snapshot_line(
        "2506.00005",
        title="Scaling laws of tokenizers",
        abstract="Vocabulary size and compute trade off in language model pretraining.",
        categories="cs.CL",
        versions=[WATERMARK],
    ),
]


@pytest.fixture(scope="module")
def corpus_env(module_dir: Path) -> dict[str, str]:
    snapshot = write_snapshot(module_dir / "snapshot.jsonl", CORPUS)
    env = {"QDRANT_PATH": str(module_dir / "corpus-qdrant"), "DATA_DIR": str(module_dir / "data")}
    done = run_cli("corpus", "ingest", str(snapshot), "--categories", "cs.*", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ingested"] == 4
    return env


@pytest.fixture(scope="module")
def worker(start_worker: WorkerFactory, corpus_env: dict[str, str]) -> WorkerProcess:
    return start_worker(**corpus_env)


def test_a_job_inside_the_watermark_makes_no_arxiv_request(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    job_id = client.submit(
        {
            "query": "graph neural networks for molecules",
            "categories": ["cs.LG"],
            "start_date": "2025-01-01",
            "end_date": "2025-06-01",
            "max_papers": 3,
        }
    )

    response = client.result(job_id, timeout=JOB_TIMEOUT)

    assert arxiv_server.requests == []
    assert {p.arxiv_id for p in response.papers} == {"2501.00001", "2502.00002"}
    provenance = response.provenance
    assert provenance.corpus is not None
    assert (provenance.corpus.records, provenance.corpus.watermark) == (4, WATERMARK)
    assert provenance.corpus.hits == 2
    assert provenance.sources == ["corpus:research_papers"]
    assert [s.outcome for s in provenance.stages if s.name == "search"] == ["skipped"]
    assert response.total_found == 2 and response.query_used == ""


def test_a_job_spanning_the_watermark_asks_arxiv_only_after_it(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    job_id = client.submit(
        {
            "query": "graph neural networks for molecules",
            "categories": ["cs.LG"],
            "start_date": "2025-01-01",
            "max_papers": 3,
        }
    )

    response = client.result(job_id, timeout=JOB_TIMEOUT)

    # The planner's queries (the broad one follows when the precise finds too few)
    # all start after the watermark.
    assert arxiv_server.requests
    for request in arxiv_server.requests:
        assert "submittedDate:[202506300000 TO" in request.params["search_query"]
    assert response.provenance.sources[0].startswith(arxiv_server.url)
    assert response.provenance.sources[-1] == "corpus:research_papers"
    assert {"2501.00001", "2502.00002"} <= {p.arxiv_id for p in response.papers}


def test_a_job_for_a_category_the_ingest_left_out_asks_arxiv(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    job_id = client.submit(
        {
            "query": "spectral graph theory",
            "categories": ["math.CO"],
            "start_date": "2025-01-01",
            "end_date": "2025-06-01",
        }
    )

    client.result(job_id, timeout=JOB_TIMEOUT)

    assert arxiv_server.requests
    for request in arxiv_server.requests:
        assert "cat:math.CO" in request.params["search_query"]
        assert "submittedDate:[202501010000 TO 202506012359]" in request.params["search_query"]


def test_arxiv_down_for_good_leaves_the_job_to_the_corpus_with_a_warning(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    arxiv_server.inject(*[Fault.status(503) for _ in range(30)])
    job_id = client.submit(
        {"query": "coreference resolution of pronouns", "categories": ["cs.CL"], "max_papers": 2}
    )

    response = client.result(job_id, timeout=JOB_TIMEOUT)

    assert len(arxiv_server.requests) >= 2  # retried, then given up
    assert response.papers and response.papers[0].arxiv_id == "2503.00003"
    warnings = response.provenance.warnings
    assert any(
        w.startswith("arXiv did not answer") and "newer than the corpus watermark 2025-06-30" in w
        for w in warnings
    ), warnings
    assert [s.outcome for s in response.provenance.stages if s.name == "search"] == ["degraded"]


def test_a_job_with_the_corpus_alone_never_asks_arxiv(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    job_id = client.submit({"query": "tokenizer vocabulary scaling", "sources": ["corpus"]})

    response = client.result(job_id, timeout=JOB_TIMEOUT)

    assert arxiv_server.requests == []
    assert [p.arxiv_id for p in response.papers][:1] == ["2506.00005"]


def test_corpus_status_reports_its_fields(corpus_env: dict[str, str], module_dir: Path) -> None:
    # The worker holds the embedded store: status falls back to the status file.
    done = run_cli("corpus", "status", "--json", env=corpus_env)

    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert {"records", "watermark", "embedding_model", "collection", "bytes_on_disk"} <= set(status)
    assert (status["records"], status["watermark"]) == (4, "2025-06-30")
    assert status["embedding_model"] == "all-MiniLM-L6-v2"
    assert status["collection"] == "research_papers" and status["bytes_on_disk"] > 0


def test_a_worker_of_another_embedding_model_refuses_to_start(
    start_worker: WorkerFactory, module_dir: Path
) -> None:
    env = {"QDRANT_PATH": str(module_dir / "other-qdrant"), "DATA_DIR": str(module_dir / "other")}
    snapshot = write_snapshot(module_dir / "small.jsonl", CORPUS[:1])
    assert run_cli("corpus", "ingest", str(snapshot), env=env).returncode == 0

    with pytest.raises(RuntimeError, match="worker exited early") as refused:
        start_worker(**env, EMBEDDINGS="openai", EMBEDDING_MODEL="text-embedding-3-small")

    message = str(refused.value)
    assert "refusing to start" in message and "all-MiniLM-L6-v2" in message
    assert "QDRANT_COLLECTION" in message


def test_a_job_finds_a_paper_only_the_corpus_holds_that_shares_no_word_with_the_query(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    # No content word in common with "Pronoun resolution in long documents /
    # Coreference resolution across chapters with memory-augmented readers".
    job_id = client.submit(
        {
            "query": "figuring out which person he or she points to in a novel",
            "end_date": "2025-06-01",
            "categories": ["cs.CL"],
            "max_papers": 1,
        }
    )

    response = client.result(job_id, timeout=JOB_TIMEOUT)

    assert arxiv_server.requests == []
    assert [p.arxiv_id for p in response.papers] == ["2503.00003"]
