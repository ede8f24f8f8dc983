"""deploy/Dockerfile builds what the deployment needs, checked without a Docker engine.

The image is multi-stage and slim, installs hash-locked wheels only, carries no
build tools or installer into the final stage, runs as a non-root user, and
runs the worker as PID 1 in exec form with SIGTERM mapped to Celery's
soft-then-requeue shutdown.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.dockerfile import Dockerfile, parse_dockerfile
from tests.deploy.manifests import DOCKERFILE, REPO_ROOT
from tests.deploy.settings_names import assert_known_variables, settings_from_environment
from worker.cli import _build_parser

RUNTIME_LOCK = REPO_ROOT / "deploy" / "requirements.runtime.lock"
DEV_LOCK = REPO_ROOT / "requirements.lock"
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|make|build-essential|pip install|pip3)\b")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE)


def pins(lock_text: str) -> dict[str, str]:
    """name -> version of a hash-pinned lock; every pin must carry hashes."""
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock_text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            assert "--hash=sha256:" in block, f"{match[1]} is pinned without a hash"
            found[canonicalize_name(match[1])] = match[2]
    return found


def pyproject_requirements(extra: str | None) -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    listed = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {canonicalize_name(Requirement(r).name) for r in listed}


def test_the_image_is_multi_stage_on_a_slim_python(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    for stage in dockerfile.stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stage.base), stage.base


def test_the_build_stage_installs_hash_locked_wheels_only(dockerfile: Dockerfile) -> None:
    installs = [i.arguments for i in dockerfile.stages[0].all("RUN") if "install" in i.arguments]
    locked = [line for line in installs if "-r requirements.runtime.lock" in line]

    assert locked, "no install from the runtime lock"
    assert "--require-hashes" in locked[0] and "--only-binary=:all:" in locked[0]
    copied = [i.arguments for i in dockerfile.stages[0].all("COPY")]
    assert "deploy/requirements.runtime.lock ./" in copied
    # Our own package: no dependency resolution, no unpinned download.
    assert any("--no-deps --no-build-isolation ." in line for line in installs)


def test_the_final_stage_carries_the_venv_and_nothing_to_build_with(
    dockerfile: Dockerfile,
) -> None:
    final = dockerfile.final
    build_name = dockerfile.stages[0].name

    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run.arguments), run.arguments
    assert [c.arguments for c in final.all("COPY")] == [f"--from={build_name} /opt/venv /opt/venv"]
    assert "--without-pip" in dockerfile.stages[0].all("RUN")[0].arguments


def test_it_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    user = dockerfile.final.last("USER").arguments.split(":")[0]

    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric UID lets Kubernetes check runAsNonRoot"


def test_the_worker_is_pid_1_in_exec_form_and_sigterm_is_a_soft_shutdown(
    dockerfile: Dockerfile,
) -> None:
    final = dockerfile.final
    entrypoint = final.last("ENTRYPOINT").exec_form()
    command = final.last("CMD").exec_form()

    assert entrypoint == ["research-arm"]
    assert command is not None
    assert _build_parser().parse_args(command).command == "worker"
    env = final.env()
    assert env["REMAP_SIGTERM"] == "SIGQUIT"
    assert env["WORKER_POOL"] == "prefork"


def test_the_image_environment_is_a_valid_configuration(
    dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dockerfile.final.env()
    assert_known_variables(env, "Dockerfile ENV")

    ours = {k: v for k, v in env.items() if not k.startswith(("PATH", "PYTHON", "REMAP"))}
    settings = settings_from_environment(monkeypatch, ours)

    assert str(settings.effective_heartbeat_file).startswith("/var/run/research-arm/")
    assert str(settings.effective_metrics_dir).startswith("/var/run/research-arm/")


def dockerignore_admits(path: str) -> bool:
    """Whether .dockerignore leaves `path` in the build context (last matching rule wins)."""
    admitted = True
    for rule in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(path, pattern):
            admitted = negate
    return admitted


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secrets(
    dockerfile: Dockerfile,
) -> None:
    sources = [
        source
        for stage in dockerfile.stages
        for copy in stage.all("COPY")
        if not copy.arguments.startswith("--from")
        for source in copy.arguments.split()[:-1]
    ]

    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert dockerignore_admits(source.rstrip("/")), f"{source} is excluded from the context"
    for secret in (".env", "deploy/k8s/base/secrets.env", ".venv", ".git", ".data"):
        assert not dockerignore_admits(secret), f"{secret} would be sent to the builder"


def test_the_runtime_lock_is_the_dev_lock_without_the_dev_tools() -> None:
    runtime = pins(RUNTIME_LOCK.read_text(encoding="utf-8"))
    dev = pins(DEV_LOCK.read_text(encoding="utf-8"))

    assert {name: dev.get(name) for name in runtime} == runtime, "versions differ between locks"
    assert pyproject_requirements(None) <= set(runtime)
    assert not pyproject_requirements("dev") & set(runtime)
