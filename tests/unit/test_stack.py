"""`research-arm up`: the processes it starts log in the format it chose for itself."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from worker import stack
from worker.cli import main
from worker.logs import LogFormat
from worker.settings import Settings
from worker.stack import LocalStack, StackOptions


class FakeProcess:
    """Stands in for subprocess.Popen: keeps what it was started with, stops when signalled."""

    def __init__(self, argv: list[str], env: dict[str, str], pid: int) -> None:
        self.argv = argv
        self.env = env
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, _signum: int) -> None:
        self.returncode = 0

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode or 0

    def kill(self) -> None:
        self.returncode = -9


@pytest.fixture
def fake_processes(monkeypatch: pytest.MonkeyPatch) -> list[FakeProcess]:
    """Every process the stack starts, in order, none of them real."""
    started: list[FakeProcess] = []

    def popen(argv: list[str], env: dict[str, str], **_: Any) -> FakeProcess:
        started.append(FakeProcess(argv, env, pid=40000 + len(started)))
        return started[-1]

    monkeypatch.setattr(stack.subprocess, "Popen", popen)
    # `up` takes over SIGINT and SIGTERM; the test process keeps its own.
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    return started


def run_stack_until_stopped(tmp_path: Path, options: StackOptions) -> int:
    settings = Settings(redis_url="redis://127.0.0.1:7777/0", data_dir=tmp_path)
    local = LocalStack(settings, options)
    local.stop_requested.set()  # stop as soon as everything has started
    return local.run()


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_every_child_logs_in_the_stacks_format(
    fake_processes: list[FakeProcess], tmp_path: Path, log_format: LogFormat
) -> None:
    assert run_stack_until_stopped(tmp_path, StackOptions(log_format=log_format)) == 0

    assert [process.argv[3] for process in fake_processes] == ["worker", "sidecar"]
    assert {process.env.get("LOG_FORMAT") for process in fake_processes} == {log_format}


def test_without_a_format_each_child_decides_for_itself(
    fake_processes: list[FakeProcess], tmp_path: Path
) -> None:
    run_stack_until_stopped(tmp_path, StackOptions())

    assert fake_processes and all("LOG_FORMAT" not in p.env for p in fake_processes)


@pytest.fixture
def stack_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[StackOptions]]:
    """The options `research-arm up` starts its stack with (the stack itself is not started)."""
    seen: list[StackOptions] = []

    def record(self: LocalStack) -> int:
        seen.append(self.options)
        return 0

    monkeypatch.setattr(LocalStack, "run", record)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    yield seen
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.mark.parametrize(
    ("log_format_env", "on_terminal", "chosen"),
    [(None, True, "console"), (None, False, "json"), ("json", True, "json")],
    ids=["terminal", "pipe", "json-forced"],
)
def test_up_hands_its_own_choice_to_the_stack(
    stack_options: list[StackOptions],
    monkeypatch: pytest.MonkeyPatch,
    log_format_env: str | None,
    on_terminal: bool,
    chosen: LogFormat,
) -> None:
    if log_format_env is not None:
        monkeypatch.setenv("LOG_FORMAT", log_format_env)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: on_terminal)

    assert main(["up"]) == 0

    assert [options.log_format for options in stack_options] == [chosen]
