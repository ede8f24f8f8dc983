"""Settings from the environment and the Celery configuration derived from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.celery_config import celery_config, restore_sweep_seconds
from worker.settings import Settings, load_settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    return monkeypatch


def test_a_bad_value_fails_at_start_up_naming_the_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("ARXIV_MIN_INTERVAL_SECONDS", "soon")

    with pytest.raises(ValidationError, match="arxiv_min_interval_seconds"):
        load_settings()


def test_the_visibility_timeout_must_outlast_the_hard_time_limit(env: pytest.MonkeyPatch) -> None:
    env.setenv("TASK_TIME_LIMIT_SECONDS", "900")
    env.setenv("BROKER_VISIBILITY_TIMEOUT_SECONDS", "600")

    with pytest.raises(ValidationError, match="BROKER_VISIBILITY_TIMEOUT_SECONDS"):
        load_settings()


def test_without_redis_url_the_recorded_local_stack_is_used(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "stack.json").write_text(json.dumps({"redis_url": "redis://127.0.0.1:7777/0"}))

    assert load_settings().broker_url() == "redis://127.0.0.1:7777/0"


def test_without_redis_url_or_a_stack_the_error_says_what_to_do(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="research-arm up"):
        load_settings().broker_url()


def test_secrets_do_not_show_in_the_settings_repr(env: pytest.MonkeyPatch) -> None:
    env.setenv("OPENAI_API_KEY", "sk-very-secret")
    env.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:7777/0")

    text = repr(load_settings())

    assert "sk-very-secret" not in text and "hunter2" not in text


def test_celery_is_configured_not_to_lose_work() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:7777/0", broker_visibility_timeout_seconds=400)

    config = celery_config(settings)

    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["accept_content"] == ["json"]
    assert config["task_serializer"] == "json"
    assert config["broker_transport_options"]["visibility_timeout"] == 400
    assert config["result_backend_transport_options"]["visibility_timeout"] == 400
    assert config["broker_transport_options"]["unacked_restore_interval"] == 10
    assert config["task_send_sent_event"] and config["worker_send_task_events"]
    assert config["task_default_queue"] == "research"
    assert config["task_time_limit"] < 400


def test_abandoned_messages_are_swept_well_within_a_short_visibility_timeout() -> None:
    assert restore_sweep_seconds(8) == 2
    assert restore_sweep_seconds(2) == 1
    assert restore_sweep_seconds(3600) == 10
