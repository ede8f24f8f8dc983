"""A small set of queries over the real arXiv records of ../shared/data/arxiv_metadata.

Written to measure the query planner (tests/bench/planner.py) before the
team's graded evaluation set exists. Relevance is binary: a paper is relevant
when its title and abstract are about what the query asks, as judged by
reading them. "keyword" queries use the words the papers use; "paraphrase"
queries ask for the same papers in other words, sharing few or no specific
words with the relevant papers' titles. The records are read at run time and
never committed; only their arXiv ids are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

_TEXT_TO_SQL = (
    "2603.10697",
    "2603.07841",
    "2603.07449",
    "2603.05996",
    "2603.05569",
    "2603.03742",
)
_HALLUCINATION = (
    "2603.10195",
    "2603.10060",
    "2603.08274",
    "2603.07755",
    "2603.05828",
    "2603.03192",
)
_LLM_JUDGES = (
    "2603.11027",
    "2603.10351",
    "2603.09403",
    "2603.10068",
    "2603.08091",
    "2603.05167",
    "2603.04738",
    "2603.04033",
    "2603.07019",
)
_PRUNING = ("2603.08083", "2603.08065", "2603.05878")
_PHYSICAL_LAWS = ("0704.0089", "0704.0107", "0704.0151", "2603.06869")


@dataclass(frozen=True)
class PlannerQuery:
    """A request's text and the arXiv ids of the papers that answer it."""

    text: str
    relevant: tuple[str, ...]
    group: Literal["keyword", "paraphrase"]


PLANNER_QUERIES: tuple[PlannerQuery, ...] = (
    PlannerQuery("text-to-SQL with large language models", _TEXT_TO_SQL, "keyword"),
    PlannerQuery(
        "hallucination detection and mitigation in large language models",
        _HALLUCINATION,
        "keyword",
    ),
    PlannerQuery(
        "machine translation quality estimation",
        ("2603.10775", "2603.07372", "2603.04083"),
        "keyword",
    ),
    PlannerQuery("pruning large language models", _PRUNING, "keyword"),
    PlannerQuery("speech emotion recognition", ("2603.08936", "2603.07138"), "keyword"),
    PlannerQuery(
        "retrieval-augmented generation benchmarks and evaluation",
        (
            "2603.10524",
            "2603.09704",
            "2603.07825",
            "2603.06198",
            "2603.04238",
            "2603.03541",
        ),
        "keyword",
    ),
    PlannerQuery(
        "preserving safety alignment during fine-tuning",
        ("2603.10243", "2603.07445"),
        "keyword",
    ),
    PlannerQuery("LLM-as-a-judge bias and reliability", _LLM_JUDGES, "keyword"),
    PlannerQuery(
        '"discrete dipole approximation" for light scattering',
        ("0704.0033", "0704.0035", "0704.0037", "0704.0038"),
        "keyword",
    ),
    PlannerQuery(
        "vortices and solitons in Bose-Einstein condensates",
        ("0704.0082", "0704.0122", "0704.0146"),
        "keyword",
    ),
    PlannerQuery(
        "low-resource speech recognition corpus",
        ("2603.08125", "2603.07554", "2603.06310", "2603.08249"),
        "keyword",
    ),
    PlannerQuery(
        "continual fine-tuning of LLMs without catastrophic forgetting",
        ("2603.09892", "2603.10243", "2603.04964", "2603.07392"),
        "keyword",
    ),
    PlannerQuery("translating questions into database queries", _TEXT_TO_SQL, "paraphrase"),
    PlannerQuery("making chatbots stop inventing facts", _HALLUCINATION, "paraphrase"),
    PlannerQuery("models that grade the answers of other models", _LLM_JUDGES, "paraphrase"),
    PlannerQuery("removing weights to shrink big neural networks", _PRUNING, "paraphrase"),
    PlannerQuery(
        "inferring the equations of nature from measurements", _PHYSICAL_LAWS, "paraphrase"
    ),
)
