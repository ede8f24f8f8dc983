"""Reading the deployment files as data: Kubernetes manifests, kustomizations, compose, Dockerfile.

The tests in this folder check these files offline (no cluster, no Docker
engine): against published schemas, and against the code they deploy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

# The image every research-arm container runs (kustomize's `images` retags it).
IMAGE_NAME = "research-arm"

Doc = dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    """One YAML document of a file under deploy/k8s."""

    path: Path
    doc: Doc

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}: {self.kind}/{self.name}"


def load_yaml_documents(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def kustomization_files() -> list[Path]:
    return sorted(K8S_DIR.rglob("kustomization.yaml"))


def manifest_files() -> list[Path]:
    """Every Kubernetes resource file: the YAML files that are not kustomizations."""
    return sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")


@cache
def all_manifests() -> tuple[Manifest, ...]:
    return tuple(
        Manifest(path, doc) for path in manifest_files() for doc in load_yaml_documents(path)
    )


def find(kind: str, name: str) -> Doc:
    """The one manifest of this kind and name (AssertionError if there is not exactly one)."""
    found = [m.doc for m in all_manifests() if m.kind == kind and m.name == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(kind: str) -> list[Manifest]:
    return [m for m in all_manifests() if m.kind == kind]


WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def workloads() -> list[Manifest]:
    return [m for m in all_manifests() if m.kind in WORKLOAD_KINDS]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def containers(workload: Doc) -> list[Doc]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(workload: Doc, name: str) -> Doc:
    found = [c for c in containers(workload) if c["name"] == name]
    assert len(found) == 1, f"no single container {name!r}"
    return found[0]


def runs_our_image(item: Doc) -> bool:
    image = str(item.get("image", ""))
    return image.split("/")[-1].split(":")[0] == IMAGE_NAME


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def container_port(item: Doc, port: int | str) -> int:
    """A probe's or Service's port as a number: a named port is looked up in the container."""
    if isinstance(port, int):
        return port
    for declared in item.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise AssertionError(f"container {item['name']!r} declares no port named {port!r}")


def http_probes(item: Doc) -> Iterator[tuple[str, Doc]]:
    """(probe kind, httpGet) for each HTTP probe of a container."""
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = item.get(kind)
        if probe and "httpGet" in probe:
            yield kind, probe["httpGet"]


def env_file_values(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped; commented keys too)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def env_file_documented_keys(path: Path) -> set[str]:
    """Keys an env file sets or shows commented out (`# KEY=value`)."""
    keys = set(env_file_values(path))
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#\s*([A-Z][A-Z0-9_]*)=", line.strip())
        if match:
            keys.add(match.group(1))
    return keys


# --- compose ----------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


def compose_variables(text: str) -> set[str]:
    """Names the compose file interpolates from the environment or .env."""
    return {m.group("name") for m in _INTERPOLATION.finditer(text.replace("$$", ""))}


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, and $$ for a literal $."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op") or "", match.group("arg")
        value = env.get(name)
        if op.endswith("-"):
            return value if value else arg
        if op.endswith("?") and not value:
            raise KeyError(f"{name}: {arg}")
        return value or ""

    escaped = text.replace("$$", "\0")
    return _INTERPOLATION.sub(substitute, escaped).replace("\0", "$")


def load_compose(env: Mapping[str, str] | None = None) -> Doc:
    """docker-compose.yml as data; interpolated with `env` when given, raw otherwise."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    if env is not None:
        text = interpolate(text, env)
    doc: Doc = yaml.safe_load(text)
    return doc


def compose_env(service: Doc) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {str(k): "" if v is None else str(v) for k, v in environment.items()}


# --- schemas ----------------------------------------------------------------------------


def schema(name: str) -> Doc:
    """One of the schema files written for these tests (tests/deploy/schemas)."""
    loaded: Doc = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return loaded
