"""Papers and settings for unit tests, built field by field so each test says only what
matters to it."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from schemas.research import Paper
from tasks.resources import StageSettings
from worker.resources import stage_settings
from worker.settings import Settings


def make_paper(arxiv_id: str = "2401.00001", **overrides: Any) -> Paper:
    fields: dict[str, Any] = {
        "arxiv_id": arxiv_id,
        "version": 1,
        "title": "Graph Neural Networks for Molecular Property Prediction",
        "authors": ["Ada Lovelace", "Alan Turing"],
        "abstract": (
            "We study graph neural networks that predict molecular properties. "
            "Message passing over atoms and bonds improves accuracy on benchmarks. "
            "We release code and data."
        ),
        "url": f"https://arxiv.org/abs/{arxiv_id}v1",
        "pdf_url": f"https://arxiv.org/pdf/{arxiv_id}v1",
        "published_date": date(2024, 1, 2),
        "updated_date": date(2024, 1, 2),
        "categories": ["cs.LG", "q-bio.BM"],
        "primary_category": "cs.LG",
    }
    fields.update(overrides)
    return Paper(**fields)


def make_stage_settings(**overrides: Any) -> StageSettings:
    """The stages' settings as a worker with default settings has them, changed by `overrides`."""
    return replace(stage_settings(Settings()), **overrides)
