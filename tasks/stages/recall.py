"""Recall: candidates from the index of papers, by hybrid retrieval over the corpus and
the papers earlier jobs stored.

Qdrant being away degrades the job, it does not fail it: arXiv is then asked
for everything.
"""

from __future__ import annotations

from schemas.research import CorpusCounts
from tasks.errors import MemoryUnavailable
from tasks.job import JobState, record_embedding
from tasks.paper_index import PaperIndex
from tasks.resources import StageResources
from tasks.stage import Attempt, Stage, StageResult

# Dense hits less similar to the query than this are not recalled. Chosen on
# the evaluation's tune half with all-MiniLM-L6-v2: paraphrased queries find
# their papers at cosines of 0.15-0.3 (0.3 lost them); below 0.15 nothing changed.
RECALL_MIN_SIMILARITY = 0.15


def recall(job: JobState, index: PaperIndex, *, limit: int, collection_source: str) -> StageResult:
    """Retrieve up to `limit` candidates for the job from the index.

    Args:
        job: the job; its request says what to retrieve and whether "corpus" is a source.
        index: the index of papers.
        limit: how many candidates to retrieve at most.
        collection_source: how provenance.sources names the index (`corpus:<collection>`).
    """
    request = job.request
    if "corpus" not in request.sources:
        return StageResult(outcome="skipped")
    query = index.embedder.embed_with_usage([request.query])
    record_embedding(job, query.tokens)
    try:
        recalled = index.recall(
            request.query,
            query_vector=query.vectors[0],
            limit=limit,
            min_similarity=RECALL_MIN_SIMILARITY,
            start_date=request.start_date,
            end_date=request.end_date,
            categories=request.categories,
        )
        holdings = index.holdings()
    except MemoryUnavailable as exc:
        job.add_warning(f"memory recall skipped: {exc}")
        return StageResult(outcome="degraded", embedding_tokens=query.tokens, qdrant_failed=True)
    job.corpus_answered = True
    job.coverage = holdings.coverage
    job.candidates = recalled
    job.recalled_ids = [paper.arxiv_id for paper in recalled]
    job.recalled_beyond_search = len(recalled)  # until arXiv's answer says otherwise
    job.memory.recalled = len(recalled)
    if holdings.coverage:
        job.corpus = CorpusCounts(
            records=holdings.records,
            watermark=max(entry.watermark for entry in holdings.coverage),
            hits=len(recalled),
        )
    if recalled:
        job.index_source = collection_source
    return StageResult(embedding_tokens=query.tokens, qdrant_failed=False)


def run(job: JobState, resources: StageResources, attempt: Attempt) -> StageResult:
    settings = resources.settings
    # As many candidates from the index as arXiv would be asked for.
    return recall(
        job,
        resources.index,
        limit=settings.candidate_count(job.request.max_papers),
        collection_source=f"corpus:{settings.qdrant_collection}",
    )


STAGE = Stage(name="recall", service="qdrant", run=run)
