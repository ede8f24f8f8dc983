"""The JSON cache in Redis (fakeredis stands in for the server)."""

# ruff: noqa: RUF001  # Greek letters, dotless i and curly quotes are the test data

from __future__ import annotations

import fakeredis
import pytest
import redis

from tasks.cache import RedisJsonCache

PREFIX = "test:cache:"


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def redis_client(request: pytest.FixtureRequest) -> redis.Redis:
    # Both ways a worker may have built its client.
    return fakeredis.FakeRedis(decode_responses=request.param)


def test_a_value_comes_back_as_it_went_in(redis_client: redis.Redis) -> None:
    cache = RedisJsonCache(redis_client, PREFIX, ttl_seconds=60)
    value = {"title": "Zoë's σ-models", "authors": ["Øyvind"], "score": 0.5, "n": 3}

    cache.set("paper", value)

    assert cache.get("paper") == value


def test_values_live_under_the_prefix_with_the_ttl(redis_client: redis.Redis) -> None:
    cache = RedisJsonCache(redis_client, PREFIX, ttl_seconds=60)

    cache.set("paper", [1, 2])

    assert 0 < redis_client.ttl(PREFIX + "paper") <= 60
    assert redis_client.exists("paper") == 0


def test_a_missing_key_is_a_miss(redis_client: redis.Redis) -> None:
    assert RedisJsonCache(redis_client, PREFIX, ttl_seconds=60).get("absent") is None


def test_a_corrupt_value_is_a_miss(redis_client: redis.Redis) -> None:
    # Given values that are not JSON: truncated, or not even UTF-8
    redis_client.set(PREFIX + "truncated", '{"title": "Sparse')
    redis_client.set(PREFIX + "binary", b"\xff\xfe\x00")
    cache = RedisJsonCache(redis_client, PREFIX, ttl_seconds=60)
    cache.set("good", {"ok": True})

    # Then they read as misses rather than errors, and do not hide the good values
    assert cache.get("truncated") is None
    assert cache.get("binary") is None
    assert cache.get_many(["good", "truncated", "binary", "absent"]) == [
        {"ok": True},
        None,
        None,
        None,
    ]


def test_get_many_returns_values_in_order_with_misses(redis_client: redis.Redis) -> None:
    cache = RedisJsonCache(redis_client, PREFIX, ttl_seconds=60)
    cache.set("a", "first")
    cache.set("c", {"third": True})

    assert cache.get_many(["a", "b", "c"]) == ["first", None, {"third": True}]
    assert cache.get_many([]) == []


def test_set_many_stores_every_item_with_the_ttl(redis_client: redis.Redis) -> None:
    cache = RedisJsonCache(redis_client, PREFIX, ttl_seconds=60)

    cache.set_many({"a": 1, "b": ["x", "y"], "c": {"z": None}})

    assert cache.get_many(["a", "b", "c"]) == [1, ["x", "y"], {"z": None}]
    assert all(0 < redis_client.ttl(PREFIX + key) <= 60 for key in "abc")


def test_a_zero_ttl_turns_the_cache_off(redis_client: redis.Redis) -> None:
    # Given a disabled cache
    cache = RedisJsonCache(redis_client, PREFIX, ttl_seconds=0)

    # When values are written, one by one and in bulk
    cache.set("a", 1)
    cache.set_many({"b": 2})

    # Then nothing is stored and nothing is found, even what another writer stored
    assert redis_client.exists(PREFIX + "a", PREFIX + "b") == 0
    redis_client.set(PREFIX + "c", "3")
    assert cache.get("c") is None
    assert cache.get_many(["a", "b", "c"]) == [None, None, None]


def test_a_disabled_cache_makes_no_redis_call() -> None:
    # Given a Redis that fails every command
    server = fakeredis.FakeServer()
    server.connected = False
    cache = RedisJsonCache(fakeredis.FakeRedis(server=server), PREFIX, ttl_seconds=0)

    # Then a disabled cache still answers
    cache.set("a", 1)
    cache.set_many({"b": 2})
    assert cache.get("a") is None
    assert cache.get_many(["a", "b"]) == [None, None]


def test_a_negative_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        RedisJsonCache(fakeredis.FakeRedis(), PREFIX, ttl_seconds=-1)
