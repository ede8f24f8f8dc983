"""What the health sidecar reports: liveness detail and the capability manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.research import ARM_ID

DependencyState = Literal["ok", "degraded", "down", "not_configured"]


class DependencyHealth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: DependencyState
    detail: str = ""


class HealthStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["healthy", "degraded", "unhealthy"]
    arm_id: Literal["research"] = ARM_ID
    version: str
    timestamp: datetime
    dependencies: dict[str, DependencyHealth] = Field(default_factory=dict)


class CapabilityManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arm_id: Literal["research"] = ARM_ID
    name: str
    description: str
    version: str
    capabilities: list[str]
    task_name: str
    queue: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
