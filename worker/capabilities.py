"""The capability manifest orchestrators read to learn what the research arm does."""

from __future__ import annotations

from schemas.export import json_schema
from schemas.health import CapabilityManifest
from schemas.research import ResearchRequest, ResearchResponse
from tasks.constants import QUEUE, TASK_EXECUTE
from tasks.version import arm_version


def capability_manifest() -> CapabilityManifest:
    return CapabilityManifest(
        name="research-arm",
        description=(
            "Searches arXiv, ranks papers by lexical and embedding relevance, summarises "
            "them with an OpenAI-compatible LLM and remembers them in Qdrant."
        ),
        version=arm_version(),
        capabilities=[
            "arxiv_search",
            "date_range_filter",
            "category_filter",
            "relevance_ranking",
            "llm_summarization",
            "extractive_fallback",
            "apa_citations",
            "bibtex",
            "qdrant_memory",
            "provenance",
        ],
        task_name=TASK_EXECUTE,
        queue=QUEUE,
        input_schema=json_schema(ResearchRequest),
        output_schema=json_schema(ResearchResponse),
    )
