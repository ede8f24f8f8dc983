"""Redis with a password, an ACL user and TLS; secrets that never show.

Each test runs its own redis-server. The worker's broker (kombu), result backend
(Celery) and own client (redis-py) all use the one REDIS_URL. The OpenAI key and
the Redis password must not appear in the worker's log, in any stored result
(responses, provenance, failures) or in the task events Flower shows.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import redis
from celery import Celery

from tests.failure.tally import RESULT_KEY, wait_for_jobs
from tests.support import Fault
from tests.support.polling import eventually
from tests.support.stack import LocalStack
from tests.support.tls import make_tls_files, start_tls_server
from worker.client import ResearchClient, celery_client
from worker.local_redis import RedisServer

pytestmark = pytest.mark.integration

API_KEY = "sk-test-SECRET-api-key-4f9c2e"
PASSWORD = "redis-SECRET-password-7a1d"
USER, USER_PASSWORD = "research-worker", "acl-SECRET-password-93b0"


class TaskEvents:
    """Every task event the workers send (what Flower shows), recorded in a thread."""

    def __init__(self, app: Celery) -> None:
        self.events: list[dict[str, Any]] = []
        self._connection = app.connection_for_read()
        self._receiver = app.events.Receiver(self._connection, handlers={"*": self.events.append})
        self._thread = threading.Thread(target=self._receiver.capture, daemon=True)

    def __enter__(self) -> TaskEvents:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(timeout=10)
        self._connection.release()


def run_jobs_and_collect(stack: LocalStack, redis_url: str) -> tuple[str, list[str]]:
    """A good job, an invalid one and one whose LLM fails; returns what could leak, and ids."""
    worker = stack.start_worker("secure", REDIS_URL=redis_url, OPENAI_API_KEY=API_KEY)
    client = ResearchClient.from_url(redis_url)
    try:
        with TaskEvents(client.app) as recorded:
            good = client.submit({"query": "graph neural networks", "max_papers": 2})
            bad = client.submit({"query": "ok", "max_papers": 99})
            wait_for_jobs(redis_url, [good, bad], timeout=30)
            stack.llm.inject(*[Fault.status(401, endpoint="chat/completions")] * 2)
            degraded = client.submit({"query": "protein structure prediction", "max_papers": 2})
            outcomes = wait_for_jobs(redis_url, [good, bad, degraded], timeout=30)
            eventually(lambda: len(recorded.events) > 10, timeout=10, what="task events")
    finally:
        client.close()
        worker.stop()
    with redis.Redis.from_url(redis_url) as store:
        results = [store.get(key) for key in store.scan_iter(RESULT_KEY.format("*"))]
    exposed = "\n".join(
        [
            worker.log_text(),
            *(value.decode() for value in results if value),
            json.dumps(recorded.events, default=str),
        ]
    )
    assert outcomes.succeeded == [good, degraded], outcomes.metas
    assert outcomes.failed_clearly == [bad]
    warnings = outcomes.response(degraded)["provenance"]["warnings"]
    assert any("HTTP 401" in warning for warning in warnings), warnings
    return exposed, [good, bad, degraded]


def assert_no_secret(exposed: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in exposed, f"{secret!r} leaked"


def test_redis_with_a_password_works_and_no_secret_shows(
    fresh_stack: LocalStack, tmp_path: Path
) -> None:
    with RedisServer(data_dir=tmp_path / "redis", password=PASSWORD) as server:
        exposed, _ = run_jobs_and_collect(fresh_stack, server.url)

    assert_no_secret(exposed, API_KEY, PASSWORD)
    assert "***" in exposed  # the broker URL is logged, masked


def test_redis_with_an_acl_user_works_and_no_secret_shows(
    fresh_stack: LocalStack, tmp_path: Path
) -> None:
    with RedisServer(data_dir=tmp_path / "redis", password=PASSWORD) as server:
        with redis.Redis.from_url(server.url) as admin:
            admin.acl_setuser(
                USER,
                enabled=True,
                passwords=[f"+{USER_PASSWORD}"],
                keys=["*"],
                channels=["*"],
                commands=["+@all"],
            )
        url = f"redis://{USER}:{USER_PASSWORD}@127.0.0.1:{server.port}/0"
        exposed, _ = run_jobs_and_collect(fresh_stack, url)

    assert_no_secret(exposed, API_KEY, PASSWORD, USER_PASSWORD)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    tls = make_tls_files(tmp_path)
    server = RedisServer(data_dir=tmp_path / "redis", password=PASSWORD, tls=tls)
    start_tls_server(server)
    yield server
    server.stop()


def test_a_rediss_url_verifies_the_certificate_for_broker_backend_and_clients(
    fresh_stack: LocalStack, tls_redis: RedisServer, tmp_path: Path
) -> None:
    url = tls_redis.url
    assert url.startswith("rediss://") and "ssl_cert_reqs=required" in url

    exposed, _ = run_jobs_and_collect(fresh_stack, url)

    assert_no_secret(exposed, API_KEY, PASSWORD)
    # A worker that does not trust the server's certificate never connects.
    (tmp_path / "other-ca").mkdir()
    other_ca = make_tls_files(tmp_path / "other-ca")
    assert tls_redis.tls is not None
    trusted_ca, untrusted_ca = (quote_plus(str(tls.ca_file)) for tls in (tls_redis.tls, other_ca))
    assert trusted_ca in url
    untrusted_url = url.replace(trusted_ca, untrusted_ca)
    untrusting = fresh_stack.worker("untrusting", REDIS_URL=untrusted_url)

    def start_and_never_be_ready() -> None:
        # start() waits for a readiness that never comes, until stopped.
        with contextlib.suppress(RuntimeError, TimeoutError):
            untrusting.start(ready_timeout=60)

    starting = threading.Thread(target=start_and_never_be_ready)
    starting.start()
    try:
        eventually(
            lambda: "certificate verify failed" in untrusting.log_text(),
            timeout=20,
            what="a refused certificate",
        )
        assert " ready." not in untrusting.log_text()
    finally:
        untrusting.stop()
        starting.join(timeout=30)
    # A URL that does not say how to check the server: checked all the same.
    unspecified = url.split("?")[0]
    assert celery_client(unspecified).conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
