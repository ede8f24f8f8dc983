"""What an evaluation run prints: where it ran, then one table of figures per system and group."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from tests.eval.metrics import METRICS, mean_metrics, query_metrics
from tests.eval.relevance_set import GROUPS, JudgedQuery
from tests.support.machine import checkout_revision, cpu_model


def commit_description() -> str:
    """The checked-out commit, with "+changes" when the work tree differs from it."""
    revision = checkout_revision()
    if revision is None:
        return "unknown (no git)"
    return revision.commit + (" +changes" if revision.changed else "")


def machine_description() -> str:
    """Host, CPU model and count, and the Python version."""
    return (
        f"{platform.node()}, {cpu_model()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def header_lines(
    *, split: str, queries: Sequence[JudgedQuery], details: Mapping[str, str]
) -> list[str]:
    """The run's context: split, query counts, machine, commit, date, and `details`."""
    counts = ", ".join(f"{sum(q.group == g for q in queries)} {g}" for g in GROUPS)
    lines = [
        f"research-arm evaluation: split {split}, {len(queries)} queries ({counts})",
        f"date:    {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"commit:  {commit_description()}",
        f"machine: {machine_description()}",
    ]
    lines += [f"{key + ':':8} {value}" for key, value in details.items()]
    return lines


def results_table(
    rankings: Mapping[str, Mapping[str, Sequence[str]]], queries: Sequence[JudgedQuery]
) -> list[str]:
    """Mean metrics per system (rows in `rankings` order) and group (keyword, paraphrase, all).

    `rankings` maps a system's name to its ranking per query id.
    """
    lines = [f"{'system':<10} {'group':<11} {'n':>3}  " + " ".join(f"{m:>7}" for m in METRICS)]
    for system, by_query in rankings.items():
        for group in (*GROUPS, "all"):
            chosen = [q for q in queries if group == "all" or q.group == group]
            figures = mean_metrics([query_metrics(by_query[q.query_id], q.grades) for q in chosen])
            values = " ".join(f"{figures[m]:>7.3f}" for m in METRICS)
            lines.append(f"{system:<10} {group:<11} {len(chosen):>3}  {values}")
    return lines


def per_query_table(
    rankings: Mapping[str, Mapping[str, Sequence[str]]], queries: Sequence[JudgedQuery]
) -> list[str]:
    """nDCG@10 of each query for each system, with the query's text."""
    systems = list(rankings)
    lines = ["query " + " ".join(f"{s:>9}" for s in systems) + "  text"]
    for q in queries:
        values = " ".join(
            f"{query_metrics(rankings[s][q.query_id], q.grades)['nDCG@10']:>9.3f}" for s in systems
        )
        lines.append(f"{q.query_id:<5} {values}  {q.query}")
    return lines
