"""Poison messages published straight to the queue with kombu: refused once, never redelivered.

Celery itself discards a pickled body, a body that is not JSON, an unknown task
name and a message without headers. Three more shapes used to take the worker
down (a body that is not `[args, kwargs, embed]`) or spin its consumer forever (no
`id` header), each message coming back for the next worker; `worker.consumer`
now refuses them the same way. After a visibility timeout nothing has come back,
the worker is alive, and the next valid job succeeds.
"""

from __future__ import annotations

import json
import pickle
import time
import uuid
from typing import Any

import pytest
import redis
from kombu import Connection, Producer

from tasks.constants import QUEUE, TASK_EXECUTE
from tests.failure.conftest import VISIBILITY_TIMEOUT
from tests.failure.tally import FaultRow, JobOutcomes, log_events, wait_for_jobs
from tests.support.polling import eventually
from tests.support.stack import LocalStack, WorkerFactory
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_headers(marker: str, task: str = TASK_EXECUTE, **changes: Any) -> dict[str, Any]:
    """Celery protocol-2 headers; `changes` with a None value drop that header."""
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": marker,
        "kwargsrepr": "{}",
        "origin": "failure-suite",
    }
    headers.update(changes)
    return {
        name: value for name, value in headers.items() if value is not None or name not in changes
    }


def request_body(marker: str) -> bytes:
    return json.dumps([[], {"request": {"query": marker}}, EMBED]).encode()


# name -> (body, content type, headers); the name is in every body, so in its log line.
POISON: dict[str, tuple[bytes, str, dict[str, Any]]] = {
    "poison-pickle": (
        pickle.dumps(((), {"request": {"query": "poison-pickle"}}, EMBED)),
        "application/x-python-serialize",
        task_headers("poison-pickle"),
    ),
    "poison-not-json": (b"{not json: poison-not-json", "application/json", task_headers("x")),
    "poison-unknown-task": (
        request_body("poison-unknown-task"),
        "application/json",
        task_headers("poison-unknown-task", task="research.no_such_task"),
    ),
    "poison-no-headers": (request_body("poison-no-headers"), "application/json", {}),
    "poison-body-string": (
        json.dumps("poison-body-string").encode(),
        "application/json",
        task_headers("x"),
    ),
    "poison-body-object": (
        json.dumps({"poison-body-object": True}).encode(),
        "application/json",
        task_headers("x"),
    ),
    "poison-no-id": (request_body("poison-no-id"), "application/json", task_headers("x", id=None)),
    "poison-yaml": (b"query: poison-yaml", "application/x-yaml", task_headers("x")),
}


def marker_lines(events: list[dict[str, Any]], marker: str) -> int:
    return sum(1 for event in events if marker in json.dumps(event))


def test_poison_messages_are_refused_once_and_the_worker_keeps_consuming(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    worker = start_worker()
    broker = redis.Redis.from_url(fresh_stack.redis_url)
    with Connection(fresh_stack.redis_url) as connection:
        producer = Producer(connection)
        for body, content_type, headers in POISON.values():
            producer.publish(
                body,
                exchange="",
                routing_key=QUEUE,
                content_type=content_type,
                content_encoding="binary" if "python" in content_type else "utf-8",
                headers=headers,
            )
    eventually(
        lambda: broker.llen(QUEUE) == 0 and broker.hlen("unacked") == 0,
        timeout=10,
        what="every poison message taken off the queue",
    )
    # Long enough for anything left unacknowledged to come back, and be seen again.
    time.sleep(VISIBILITY_TIMEOUT + 2)
    queue_after, unacked_after = broker.llen(QUEUE), broker.hlen("unacked")
    broker.close()
    valid = client.submit({"query": "graph neural networks", "max_papers": 2})
    outcomes = wait_for_jobs(fresh_stack.redis_url, [valid], timeout=30)

    events = log_events([worker.log_path])
    seen = {name: marker_lines(events, name) for name in POISON}
    record_fault(
        FaultRow.of(
            f"{len(POISON)} poison messages published with kombu (+1 valid job)",
            JobOutcomes(outcomes.metas),
            note=f"each refused and logged once, none back after {VISIBILITY_TIMEOUT + 2} s",
        )
    )
    assert (queue_after, unacked_after) == (0, 0)
    assert seen == dict.fromkeys(POISON, 1), seen
    assert worker.process is not None and worker.process.poll() is None
    assert "Unrecoverable error" not in worker.log_text()
    assert "Connection to broker lost" not in worker.log_text()
    assert outcomes.succeeded == [valid]
