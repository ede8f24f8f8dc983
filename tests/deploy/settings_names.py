"""Which environment variables the deployment files may set, and loading settings from them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest
from flower.options import default_options

from worker.settings import Settings, load_settings

SETTINGS_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)

# Variables that are not research-arm settings, each read by something else on purpose.
OUTSIDERS = {
    "REDIS_PASSWORD": "the one copy of the password; REDIS_URL and Redis itself are built from it",
    "REMAP_SIGTERM": "billiard's switch: SIGTERM starts Celery's cold (soft-then-requeue) shutdown",
    "PATH": "the image's venv on the path",
    "PYTHONUNBUFFERED": "Python's own: logs leave at once",
    "PYTHONDONTWRITEBYTECODE": "Python's own: no .pyc writes on a read-only root",
}
FLOWER_PREFIX = "FLOWER_"


def is_flower_option(name: str) -> bool:
    """FLOWER_X is an option Flower reads from the environment itself."""
    return name.startswith(FLOWER_PREFIX) and name[len(FLOWER_PREFIX) :].lower() in default_options


def unknown_variables(names: Iterable[str]) -> set[str]:
    return {
        name
        for name in names
        if name not in SETTINGS_VARIABLES and name not in OUTSIDERS and not is_flower_option(name)
    }


def assert_known_variables(names: Iterable[str], where: str) -> None:
    unknown = unknown_variables(names)
    assert not unknown, f"{where} sets variables no code reads: {sorted(unknown)}"


def settings_from_environment(
    monkeypatch: pytest.MonkeyPatch, variables: Mapping[str, str]
) -> Settings:
    """The Settings a process would load with exactly these variables of ours set."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return load_settings()
