"""The parts that stop work cleanly, without a worker: the summaries' deadline and
cancellation, the cancellable thread pool, the poison-message check, TLS options.
"""

from __future__ import annotations

import signal
import ssl
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import fakeredis
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from schemas.research import Paper
from tasks.cache import RedisJsonCache
from tasks.cancellation import current_task_cancelled
from tasks.errors import WorkCancelled
from tasks.summarizer import ChatAnswer, summarize_papers, summary_cache_key
from tests.unit.factories import make_paper
from worker.consumer import missing_task_id
from worker.redis_tls import redis_ssl_options
from worker.thread_pool import CancellableThreadPool

ANSWERING, HANGING = "2401.00001", "2401.00002"


class StubLLM:
    """Answers ANSWERING at once; HANGING waits until `release` is set."""

    model = "stub-model"

    def __init__(self) -> None:
        self.release = threading.Event()

    def complete(self, paper: Paper) -> ChatAnswer:
        if paper.arxiv_id == HANGING:
            self.release.wait(10)
        return ChatAnswer(f"About {paper.arxiv_id}", True, prompt_tokens=9, completion_tokens=3)


@pytest.fixture
def llm() -> Iterator[StubLLM]:
    stub = StubLLM()
    yield stub
    stub.release.set()  # let the abandoned call's thread end


@pytest.fixture
def cache() -> RedisJsonCache:
    return RedisJsonCache(fakeredis.FakeRedis(), "summary:", 60)


PAPERS = [make_paper(ANSWERING), make_paper(HANGING)]


def test_papers_unanswered_at_the_deadline_get_flagged_extractive_summaries(
    llm: StubLLM, cache: RedisJsonCache
) -> None:
    started = time.monotonic()
    batch = summarize_papers(
        PAPERS,
        llm,  # type: ignore[arg-type]
        cache,
        concurrency=2,
        final_attempt=False,
        deadline=started + 0.5,
    )

    assert time.monotonic() - started < 1.5
    answered, hung = batch.papers
    assert (answered.summary_method, answered.summary) == ("llm", f"About {ANSWERING}")
    assert hung.summary_method == "extractive"
    assert batch.timed_out == 1 and not batch.retryable
    assert batch.warnings == [
        f"summary of {HANGING} is extractive: the LLM did not answer within the stage's time limit"
    ]
    assert cache.get(summary_cache_key(PAPERS[0], llm.model))["summary"] == f"About {ANSWERING}"


def test_a_cancelled_stage_stops_waiting_and_keeps_what_it_received(
    llm: StubLLM, cache: RedisJsonCache
) -> None:
    cancel_at = time.monotonic() + 0.3

    with pytest.raises(WorkCancelled):
        summarize_papers(
            PAPERS,
            llm,  # type: ignore[arg-type]
            cache,
            concurrency=2,
            final_attempt=False,
            cancelled=lambda: time.monotonic() > cancel_at,
        )

    assert cache.get(summary_cache_key(PAPERS[0], llm.model))["summary"] == f"About {ANSWERING}"


def test_celerys_soft_time_limit_while_waiting_degrades_instead_of_failing(
    llm: StubLLM, cache: RedisJsonCache
) -> None:
    # What prefork does: a signal whose handler raises SoftTimeLimitExceeded.
    def soft_limit(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        batch = summarize_papers(
            PAPERS,
            llm,  # type: ignore[arg-type]
            cache,
            concurrency=2,
            final_attempt=True,
            interrupted_by=(SoftTimeLimitExceeded,),
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert [paper.summary_method for paper in batch.papers] == ["llm", "extractive"]
    assert batch.timed_out == 1


def test_the_thread_pool_cancels_the_task_celery_names_by_its_thread_id() -> None:
    pool = CancellableThreadPool(limit=2)
    pool.start()
    accepted: list[int] = []
    saw_cancel = threading.Event()

    def task() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not current_task_cancelled():
            time.sleep(0.01)
        if current_task_cancelled():
            saw_cancel.set()

    try:
        pool.apply_async(
            task,
            callback=lambda *_: None,
            accept_callback=lambda pid, _time: accepted.append(pid),
        )
        deadline = time.monotonic() + 5
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert accepted and accepted[0] != 0
        pool.terminate_job(accepted[0])
        assert saw_cancel.wait(5)
        assert not current_task_cancelled()  # only the task's own thread is cancelled
    finally:
        pool.stop()


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"task": "research.execute", "id": "job-1"}, False),
        ({"task": "research.execute"}, True),
        ({"task": "research.execute", "id": ""}, True),
        ({}, False),  # not a protocol-2 task message: Celery discards it itself
    ],
)
def test_a_task_message_without_an_id_is_refused(headers: dict[str, str], refused: bool) -> None:
    assert missing_task_id(SimpleNamespace(headers=headers)) is refused


def test_tls_options_come_from_the_rediss_url_and_verify_by_default() -> None:
    url = "rediss://:pw@127.0.0.1:6380/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fca.crt"
    assert redis_ssl_options(url) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/etc/ca.crt",
    }
    assert redis_ssl_options("rediss://127.0.0.1:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert redis_ssl_options("rediss://h/0?ssl_cert_reqs=CERT_NONE") == {
        "ssl_cert_reqs": ssl.CERT_NONE
    }
    assert redis_ssl_options("redis://127.0.0.1:6379/0") is None
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        redis_ssl_options("rediss://h/0?ssl_cert_reqs=sometimes")
