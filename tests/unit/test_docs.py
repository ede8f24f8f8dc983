"""The documentation holds what it promises: each setting, metric and endpoint on its page,
a README short enough to read, and links that lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from worker.metrics import ScrapeValues, SidecarCollector, WorkerMetrics
from worker.settings import Settings
from worker.sidecar import ROUTES

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250
# [text](target) in markdown; the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def metric_names() -> list[str]:
    """Every metric name a scrape of the sidecar can show, as Prometheus exposes it."""
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    every_value_read = ScrapeValues(
        queue="research",
        queue_waiting=0,
        queue_unacked=0,
        worker_hostname="research@host",
        worker_alive=True,
        worker_ready=True,
        heartbeat_age_seconds=1.0,
        dependencies={"redis": True, "qdrant": True},
        arxiv_gate_cooldown_seconds=0.0,
        pending_store_batches=0,
    )
    registry.register(SidecarCollector(lambda: every_value_read))
    return sorted(
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in registry.collect()
    )


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def heading_anchors(markdown: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to -."""
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_configuration_reference(field: str) -> None:
    assert f"| `{field.upper()}` |" in page("configuration.md")


@pytest.mark.parametrize("metric", metric_names())
def test_every_metric_is_in_the_operations_metrics_table(metric: str) -> None:
    assert f"`{metric}`" in page("operations.md")


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_every_sidecar_endpoint_is_in_the_operations_endpoints_table(path: str) -> None:
    assert f"| `GET {path}` |" in page("operations.md")


def test_the_readme_fits_on_a_few_screens() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")

    assert lines <= README_MAX_LINES


@pytest.mark.parametrize("source", markdown_files(), ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file_that_exists(source: Path) -> None:
    targets = LINK.findall(source.read_text(encoding="utf-8"))
    local = [t.split("#", 1)[0] for t in targets if "://" not in t and not t.startswith("#")]

    missing = [t for t in local if not (source.parent / t).exists()]

    assert missing == []


def test_the_readme_links_every_docs_page() -> None:
    linked = {Path(t.split("#", 1)[0]) for t in LINK.findall(README.read_text(encoding="utf-8"))}

    assert {Path("docs") / p.name for p in DOCS.glob("*.md")} <= linked


@pytest.mark.parametrize("source", markdown_files(), ids=lambda path: path.name)
def test_every_link_to_a_section_names_a_heading_of_that_page(source: Path) -> None:
    sections = [
        t.split("#", 1) for t in LINK.findall(source.read_text(encoding="utf-8")) if "#" in t
    ]
    local = [(target or source.name, anchor) for target, anchor in sections if "://" not in target]

    unknown = [
        f"{target}#{anchor}"
        for target, anchor in local
        if anchor not in heading_anchors(source.parent / target)
    ]

    assert unknown == []
