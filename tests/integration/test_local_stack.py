"""`research-arm up` then `research-arm submit` from the same directory, as a person runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from schemas.research import ResearchResponse
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from worker.local_redis import free_port

pytestmark = pytest.mark.integration


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli", *args]


@pytest.fixture
def stack_env(
    tmp_path: Path, arxiv_server: FakeArxivServer, llm_server: FakeOpenAIServer
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATA_DIR")}
    env.update(
        ARXIV_API_URL=arxiv_server.url,
        ARXIV_MIN_INTERVAL_SECONDS="0",
        OPENAI_BASE_URL=llm_server.url,
        OPENAI_API_KEY="sk-test",
        LLM_MODEL="fake-model",
        LOG_FORMAT="json",
        HEALTH_PORT=str(free_port()),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return env


@pytest.fixture
def running_stack(tmp_path: Path, stack_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(cli("up"), cwd=tmp_path, env=stack_env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while not (tmp_path / ".data" / "stack.json").exists():
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        assert time.monotonic() < deadline, "up did not record the stack in time"
        time.sleep(0.1)
    yield up
    if up.poll() is None:
        up.kill()
        up.wait()
    log.close()


def test_submit_finds_the_stack_that_up_recorded_and_ctrl_c_stops_everything(
    tmp_path: Path, stack_env: dict[str, str], running_stack: subprocess.Popen[bytes]
) -> None:
    stack = json.loads((tmp_path / ".data" / "stack.json").read_text())
    children = [psutil.Process(pid) for pid in stack["children"].values()]
    redis_processes = [
        p for p in psutil.Process(running_stack.pid).children() if "redis-server" in p.name()
    ]

    submitted = subprocess.run(
        cli("submit", "graph neural networks", "--max-papers", "2", "--wait", "--json"),
        cwd=tmp_path,
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert submitted.returncode == 0, submitted.stderr
    response = ResearchResponse.model_validate_json(submitted.stdout)
    assert len(response.papers) == 2
    assert "success" in submitted.stderr

    running_stack.send_signal(signal.SIGINT)
    assert running_stack.wait(timeout=60) == 0
    assert redis_processes, "up starts its own Redis when REDIS_URL is unset"
    for process in children + redis_processes:
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / ".data" / "stack.json").exists()
    assert (tmp_path / ".data" / "redis").is_dir()


def test_submit_without_a_stack_says_how_to_start_one(
    tmp_path: Path, stack_env: dict[str, str]
) -> None:
    submitted = subprocess.run(
        cli("submit", "graph neural networks"),
        cwd=tmp_path,
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert submitted.returncode == 2
    assert "research-arm up" in submitted.stderr


def test_submit_rejects_a_bad_request_before_sending_it(
    tmp_path: Path, stack_env: dict[str, str]
) -> None:
    submitted = subprocess.run(
        cli("submit", "graph neural networks", "--from", "2024-02-30"),
        cwd=tmp_path,
        env={**stack_env, "REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert submitted.returncode == 2
    assert "start_date" in submitted.stderr
