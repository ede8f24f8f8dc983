"""Flower as `research-arm up --flower` runs it, against the test Redis and a real worker.

Everything is checked through Flower's REST API: the worker is online, a
finished job's tasks are listed by name with their state, a rejected job shows
as a failure, nobody gets in without the password, and the task list survives
a restart of Flower (persistent mode).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.polling import eventually
from tests.support.stack import WorkerFactory
from tests.support.worker_process import REPO_ROOT, WorkerProcess
from worker.client import JobFailed, ResearchClient
from worker.flower import FlowerLaunch, flower_launch
from worker.local_redis import free_port
from worker.settings import Settings

pytestmark = pytest.mark.integration

JOB_TIMEOUT = 60
STAGE_TASKS = {
    "research.recall",
    "research.search",
    "research.rank",
    "research.summarize",
    "research.store",
}


@pytest.fixture(scope="module")
def worker(start_worker: WorkerFactory) -> WorkerProcess:
    return start_worker()


@pytest.fixture(scope="module")
def launch(worker_env: dict[str, str], module_dir: Path) -> FlowerLaunch:
    # FLOWER_BASIC_AUTH unset: the launcher makes the credentials, as `up` does.
    settings = Settings(
        redis_url=worker_env["REDIS_URL"],
        data_dir=module_dir / "flower-data",
        flower_basic_auth=None,
        flower_persistent=True,
    )
    return flower_launch(settings, port=free_port())


class Flower:
    """A Flower process from `launch`, and an authenticated client of its API."""

    def __init__(self, launch: FlowerLaunch, env: dict[str, str], log_path: Path) -> None:
        self.launch = launch
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        credentials = launch.env["FLOWER_BASIC_AUTH"].encode()
        self.authorization = "Basic " + base64.b64encode(credentials).decode()

    def start(self) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.launch.argv,
                cwd=REPO_ROOT,
                env={**clean, **self.env, **self.launch.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        eventually(lambda: self.get("/api/workers")[0] == 200, timeout=30, what="Flower up")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # Flower saves its persistent state on the way out
            self.process.wait(timeout=20)

    def get(self, path: str, authorization: str | None = "") -> tuple[int, Any]:
        """Status and parsed JSON body; `authorization` None sends none, "" the right one."""
        request = urllib.request.Request(self.launch.url + path)
        header = self.authorization if authorization == "" else authorization
        if header is not None:
            request.add_header("Authorization", header)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (OSError, ValueError):
            return 0, None


@pytest.fixture(scope="module")
def flower(
    launch: FlowerLaunch, worker_env: dict[str, str], module_dir: Path, worker: WorkerProcess
) -> Iterator[Flower]:
    process = Flower(launch, worker_env, module_dir / "flower.log")
    process.start()
    yield process
    process.stop()


def tasks_by_name(flower: Flower) -> dict[str, str]:
    """Flower's task list as task name -> state (the last one listed per name)."""
    status, tasks = flower.get("/api/tasks")
    assert status == 200
    return {task["name"]: task["state"] for task in tasks.values() if task.get("name")}


def test_nobody_gets_in_without_the_password(flower: Flower) -> None:
    assert flower.launch.credentials_file is not None  # generated, as `up` does by default
    for path in ("/api/workers", "/api/tasks", "/api/task/types"):
        assert flower.get(path, authorization=None)[0] == 401
    wrong = "Basic " + base64.b64encode(b"research:not-the-password").decode()
    assert flower.get("/api/tasks", authorization=wrong)[0] == 401
    assert flower.get("/api/tasks")[0] == 200


def test_the_worker_is_online(flower: Flower, worker: WorkerProcess) -> None:
    online = eventually(
        lambda: {
            name for name, up in (flower.get("/api/workers?status=true")[1] or {}).items() if up
        },
        timeout=20,
        what="the worker shows online",
    ).value

    node = worker.hostname.split("%", 1)[0]  # "worker-1@": Celery fills in the host
    assert any(name.startswith(node) for name in online)


def test_a_finished_jobs_tasks_appear_by_name_with_their_state(
    flower: Flower, client: ResearchClient
) -> None:
    job_id = client.submit({"query": "graph neural networks", "max_papers": 2})
    client.result(job_id, timeout=JOB_TIMEOUT)
    rejected_id = client.submit({"query": "ok query", "max_papers": 99})
    with pytest.raises(JobFailed):
        client.result(rejected_id, timeout=JOB_TIMEOUT)

    def all_listed() -> dict[str, str] | None:
        tasks = tasks_by_name(flower)
        return tasks if STAGE_TASKS | {"research.execute"} <= set(tasks) else None

    tasks = eventually(all_listed, timeout=20, what="every task of the jobs listed").value
    assert {name: tasks[name] for name in STAGE_TASKS} == dict.fromkeys(STAGE_TASKS, "SUCCESS")
    # Looked up by id: a successful job's research.execute is replaced by its
    # chain and never ends on its own, so "the last row named research.execute"
    # may be that one rather than the rejected job.
    rejected = eventually(
        lambda: (
            (info := flower.get(f"/api/task/info/{rejected_id}")[1])
            and info.get("state") == "FAILURE"
            and info
        ),
        timeout=20,
        what="the rejected job shows FAILURE",
    ).value
    assert rejected["name"] == "research.execute"
    assert "InvalidRequest" in rejected["exception"]
    status, info = flower.get(f"/api/task/info/{job_id}")
    assert status == 200 and info["state"] == "SUCCESS"


def test_flowers_task_list_survives_a_restart(flower: Flower) -> None:
    before = tasks_by_name(flower)

    flower.stop()
    flower.start()

    assert set(before) >= STAGE_TASKS
    assert tasks_by_name(flower) == before
