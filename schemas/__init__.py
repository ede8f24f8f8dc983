"""Public contracts of research-arm (pydantic v2 models and their JSON Schemas)."""

from schemas.health import CapabilityManifest, DependencyHealth, HealthStatus
from schemas.research import (
    ARM_ID,
    MemoryCounts,
    ModelNames,
    Paper,
    Provenance,
    ResearchRequest,
    ResearchResponse,
    StageRecord,
)

__all__ = [
    "ARM_ID",
    "CapabilityManifest",
    "DependencyHealth",
    "HealthStatus",
    "MemoryCounts",
    "ModelNames",
    "Paper",
    "Provenance",
    "ResearchRequest",
    "ResearchResponse",
    "StageRecord",
]
