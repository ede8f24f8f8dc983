"""The README is the operators' reference: it must name every setting the worker reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented_in_the_configuration_table(field: str) -> None:
    assert f"| `{field.upper()}` |" in README.read_text(encoding="utf-8")
