"""Structured logs: JSON lines, bound job context, secrets masked, the format chosen."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from worker.logs import LogFormat, chosen_log_format, configure_logging, redact_text


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    configure_logging("INFO", "json")
    yield capsys
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.getLogger().handlers.clear()


def test_lines_are_json_with_the_bound_job_context(json_logs: pytest.CaptureFixture[str]) -> None:
    structlog.contextvars.bind_contextvars(job_id="job-1", task_id="task-1", stage="search")

    structlog.get_logger("test").info("stage_finished", papers=3)

    err = json_logs.readouterr().err
    line = json.loads(err.strip().splitlines()[-1])
    assert line["event"] == "stage_finished"
    assert (line["job_id"], line["task_id"], line["stage"], line["papers"]) == (
        "job-1",
        "task-1",
        "search",
        3,
    )


def test_secrets_are_masked(json_logs: pytest.CaptureFixture[str]) -> None:
    structlog.get_logger("test").info(
        "connecting", api_key="sk-secret", url="redis://:hunter2@127.0.0.1:6380/0"
    )
    logging.getLogger("celery").warning("broker at redis://user:pw1234@host:6379/0")

    output = json_logs.readouterr().err
    assert "sk-secret" not in output and "hunter2" not in output and "pw1234" not in output
    assert "redis://***@127.0.0.1:6380/0" in output


def test_url_credentials_are_masked_in_text() -> None:
    assert redact_text("rediss://default:s3cret@cache:6380/0") == "rediss://***@cache:6380/0"
    assert redact_text("https://arxiv.org/abs/1234") == "https://arxiv.org/abs/1234"


@pytest.mark.parametrize(
    ("explicit", "on_terminal", "chosen"),
    [
        (None, True, "console"),
        (None, False, "json"),
        ("json", True, "json"),
        ("console", False, "console"),
    ],
    ids=["terminal", "pipe", "json-forced", "console-forced"],
)
def test_log_format_follows_the_terminal_unless_log_format_says(
    explicit: LogFormat | None, on_terminal: bool, chosen: LogFormat
) -> None:
    assert chosen_log_format(explicit, on_terminal=on_terminal) == chosen
