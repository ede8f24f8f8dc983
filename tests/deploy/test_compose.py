"""docker-compose.yml runs what the code expects: scalable workers, health, secrets from .env."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.deploy.manifests import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    REPO_ROOT,
    Doc,
    compose_env,
    compose_variables,
    env_file_documented_keys,
    env_file_values,
    load_compose,
)
from tests.deploy.settings_names import assert_known_variables, settings_from_environment
from worker.cli import _build_parser

OUR_SERVICES = ("worker", "sidecar", "flower")


@pytest.fixture(scope="module")
def compose() -> Doc:
    """The compose file as `docker compose config` sees it, with .env copied from the example."""
    return load_compose(env_file_values(ENV_EXAMPLE))


def seconds(duration: str) -> float:
    """A compose duration such as "90s", "1m30s" or "2m"."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_workers_scale_freely_no_fixed_name_and_no_host_port(compose: Doc) -> None:
    worker = compose["services"]["worker"]

    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (REPO_ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()


def test_worker_sidecar_and_flower_run_one_image_with_different_commands(compose: Doc) -> None:
    services = compose["services"]
    parser = _build_parser()

    assert len({services[name]["image"] for name in OUR_SERVICES}) == 1
    assert parser.parse_args(services["worker"]["command"]).command == "worker"
    assert parser.parse_args(services["sidecar"]["command"]).command == "sidecar"
    assert services["flower"]["entrypoint"] == ["celery"]
    assert services["flower"]["command"][:3] == ["-A", "worker.app", "flower"]


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(compose: Doc) -> None:
    services = compose["services"]

    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
    assert set(services["worker"]["depends_on"]) == {"redis", "qdrant"}
    assert set(services["flower"]["depends_on"]) == {"redis"}


def test_the_worker_healthcheck_is_the_sidecar_s_liveness_check(compose: Doc) -> None:
    test = compose["services"]["worker"]["healthcheck"]["test"]

    assert test[0] == "CMD"
    assert _build_parser().parse_args(test[2:]).command == "check"
    assert test[1] == "research-arm"


def test_redis_keeps_an_append_only_file_refuses_eviction_and_wants_a_password(
    compose: Doc,
) -> None:
    command = " ".join(compose["services"]["redis"]["command"])

    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert '--requirepass "$REDIS_PASSWORD"' in command
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])
    assert any(v.endswith(":/qdrant/storage") for v in compose["services"]["qdrant"]["volumes"])


def test_the_workers_configuration_is_valid_and_points_at_the_compose_services(
    compose: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose_env(compose["services"]["worker"])
    password = env_file_values(ENV_EXAMPLE)["REDIS_PASSWORD"]

    settings = settings_from_environment(monkeypatch, env)

    assert settings.broker_url() == f"redis://:{password}@redis:6379/0"
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.qdrant_api_key is not None


def test_every_variable_given_to_our_services_is_a_setting_or_a_known_outsider(
    compose: Doc,
) -> None:
    for name in OUR_SERVICES:
        assert_known_variables(compose_env(compose["services"][name]), f"compose {name}")


def test_docker_stops_a_worker_only_after_its_soft_shutdown_and_one_upstream_call(
    compose: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = compose["services"]["worker"]
    settings = settings_from_environment(monkeypatch, compose_env(worker))
    longest_call = max(settings.llm_timeout_seconds, settings.arxiv_timeout_seconds)

    assert seconds(worker["stop_grace_period"]) >= (
        settings.worker_soft_shutdown_timeout_seconds + longest_call + 10
    )


def test_secrets_are_required_and_every_variable_is_documented_in_the_example() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")

    assert compose_variables(text) <= env_file_documented_keys(ENV_EXAMPLE)
    for secret in ("REDIS_PASSWORD", "QDRANT_API_KEY", "FLOWER_BASIC_AUTH"):
        assert f"${{{secret}:?" in text, f"{secret} should be required"
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        load_compose({})


def test_the_real_env_file_is_ignored_and_the_example_is_committed() -> None:
    def git(*args: str) -> int:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, check=False).returncode

    assert git("check-ignore", "--quiet", ".env") == 0
    assert git("check-ignore", "--quiet", ".env.example") == 1


def test_published_ports_listen_on_loopback_only(compose: Doc) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
