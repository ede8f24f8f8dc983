"""The usage ledger, failed attempts' usage kept across retries, and delivery counts."""

from __future__ import annotations

import fakeredis
import pytest

from schemas.research import ArxivUsage, EmbeddingUsage, LlmUsage, Usage
from tasks.deliveries import DELIVERY_COUNT_TTL_SECONDS, DeliveryCounter, delivery_key
from tasks.errors import DeliveryLimitExceeded
from tasks.usage import AttemptUsage, add_usage, usage_since


def spending(calls: int, tokens: int, requests: int = 0) -> Usage:
    return Usage(
        llm=LlmUsage(calls=calls, prompt_tokens=tokens, completion_tokens=tokens // 2),
        embeddings=EmbeddingUsage(calls=1, tokens=7),
        arxiv=ArxivUsage(requests=requests, cache_hits=1, gate_wait_ms=12.5),
    )


def test_what_was_spent_since_a_snapshot_added_back_gives_the_total() -> None:
    before = spending(1, 10)
    now = before.model_copy(deep=True)
    add_usage(now, spending(2, 40, requests=1))

    assert usage_since(now, before) == spending(2, 40, requests=1)


def test_failed_attempts_usage_comes_back_once_each() -> None:
    redis = fakeredis.FakeRedis()
    attempts = AttemptUsage(redis, "job-1", "summarize")

    attempts.keep(spending(2, 30))
    attempts.keep(spending(1, 10))
    attempts.keep(Usage())  # an attempt that spent nothing writes nothing

    earlier = attempts.earlier()
    assert earlier.llm == LlmUsage(calls=3, prompt_tokens=40, completion_tokens=20)
    assert earlier.arxiv.gate_wait_ms == 25.0
    assert redis.llen("research-arm:usage:job-1:summarize") == 2
    assert AttemptUsage(redis, "job-1", "search").earlier() == Usage()


def test_deliveries_that_end_start_the_count_again() -> None:
    redis = fakeredis.FakeRedis()
    counter = DeliveryCounter(redis, "task-1", retries=0)

    assert counter.check("research.rank", max_deliveries=3) == 1
    counter.finish()

    assert counter.check("research.rank", max_deliveries=3) == 1
    assert 0 < redis.ttl(delivery_key("task-1", 0)) <= DELIVERY_COUNT_TTL_SECONDS


def test_the_delivery_after_workers_died_twice_fails_at_the_limit() -> None:
    redis = fakeredis.FakeRedis()

    # Two deliveries whose worker died: neither finished.
    assert DeliveryCounter(redis, "task-1", 0).check("research.summarize", 3) == 1
    assert DeliveryCounter(redis, "task-1", 0).check("research.summarize", 3) == 2
    with pytest.raises(DeliveryLimitExceeded) as error:
        DeliveryCounter(redis, "task-1", 0).check("research.summarize", 3)

    assert error.value.stage == "research.summarize" and error.value.deliveries == 3
    assert "research.summarize was delivered 3 times" in str(error.value)
    # The failure ended the delivery: nothing is left behind.
    assert not redis.exists(delivery_key("task-1", 0))


def test_a_celery_retry_is_a_new_message_with_a_count_of_its_own() -> None:
    redis = fakeredis.FakeRedis()
    DeliveryCounter(redis, "task-1", retries=0).check("research.search", 2)

    assert DeliveryCounter(redis, "task-1", retries=1).check("research.search", 2) == 1


def test_the_error_survives_the_result_backends_round_trip() -> None:
    error = DeliveryLimitExceeded.for_stage("research.store", 3)

    rebuilt = DeliveryLimitExceeded(*error.args)

    assert str(rebuilt) == str(error)
    assert (rebuilt.stage, rebuilt.deliveries) == ("research.store", 3)
