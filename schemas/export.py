"""JSON Schema export of the public models, for orchestrators in other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.health import CapabilityManifest, HealthStatus
from schemas.research import ResearchRequest, ResearchResponse

SCHEMA_DIR = Path(__file__).parent / "json"

EXPORTED_MODELS: dict[str, type[BaseModel]] = {
    "research_request": ResearchRequest,
    "research_response": ResearchResponse,
    "health_status": HealthStatus,
    "capability_manifest": CapabilityManifest,
}


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema of a model as received (validation mode for input, serialization for output)."""
    if model is ResearchRequest:
        return model.model_json_schema(mode="validation")
    return model.model_json_schema(mode="serialization")


def render_schema_files() -> dict[str, str]:
    """File name to file text for every exported model, stable across runs."""
    return {
        f"{name}.schema.json": json.dumps(json_schema(model), indent=2, sort_keys=True) + "\n"
        for name, model in EXPORTED_MODELS.items()
    }


def write_schema_files(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in render_schema_files().items():
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
