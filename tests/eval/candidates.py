"""The judging aid: every candidate a query's grader should read, found by several means.

For each query of the relevance set it prints the union of

- BM25 over all the records (title + abstract), the top 30;
- every record whose title or abstract matches one of the query's `patterns`
  (regular expressions written by the grader: the topic's keywords, their
  synonyms and spellings, the vocabulary a paraphrase avoids);

with each record's title and the start of its abstract, so the grader reads
them and writes the grades into `relevance_set.json`. Grades already given
are shown beside each candidate. Run `python -m tests.eval.candidates [QUERY_ID ...]`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from tasks.relevance import lexical_scores
from tests.eval.records import EvalRecord, load_records
from tests.eval.relevance_set import JudgedQuery, load_relevance_set

BM25_DEPTH = 30


def candidate_pool(
    query: JudgedQuery, records: Sequence[EvalRecord]
) -> list[tuple[str, EvalRecord]]:
    """(how it was found, record) for each candidate, BM25's first, best first."""
    scores = lexical_scores(query.query, [record.text for record in records])
    ranked = sorted(range(len(records)), key=lambda i: -scores[i])[:BM25_DEPTH]
    found: dict[str, tuple[str, EvalRecord]] = {}
    for position, index in enumerate(ranked):
        if scores[index] > 0:
            found[records[index].arxiv_id] = (f"bm25#{position + 1}", records[index])
    patterns = [re.compile(pattern, re.IGNORECASE) for pattern in query.patterns]
    for record in records:
        hits = [p.pattern for p in patterns if p.search(record.text)]
        if hits and record.arxiv_id not in found:
            found[record.arxiv_id] = ("grep:" + "|".join(hits)[:40], record)
    return list(found.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("query_ids", nargs="*", help="only these queries (default: all)")
    parser.add_argument("--chars", type=int, default=400, help="abstract characters to show")
    args = parser.parse_args(argv)
    records = load_records()
    for query in load_relevance_set().queries:
        if args.query_ids and query.query_id not in args.query_ids:
            continue
        print(f"=== {query.query_id} [{query.group}] {query.query}")
        for how, record in candidate_pool(query, records):
            grade = query.grades.get(record.arxiv_id, "-")
            print(f"  {record.arxiv_id} g={grade} ({how}) {record.title}")
            print(f"      {record.abstract[: args.chars]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
