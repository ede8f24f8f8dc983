"""The global arXiv rate gate, run against fakeredis (its Lua runs the real script)."""

from __future__ import annotations

import threading

import fakeredis
import pytest
import redis

from tasks.rate_gate import ArxivRateGate

KEY = "test:arxiv:next-slot"
# Long enough that every reservation of a test falls inside the first interval,
# so the waits must be exact multiples of it, give or take the test's own runtime.
INTERVAL = 60.0
SLACK = 0.5


@pytest.fixture
def redis_client() -> redis.Redis:
    return fakeredis.FakeRedis()


def test_the_first_request_goes_at_once(redis_client: redis.Redis) -> None:
    assert ArxivRateGate(redis_client, INTERVAL, key=KEY).reserve() == 0.0


def test_consecutive_reservations_are_one_interval_apart(redis_client: redis.Redis) -> None:
    # Given a gate of one request per minute
    gate = ArxivRateGate(redis_client, INTERVAL, key=KEY)

    # When four requests reserve their slots back to back
    waits = [gate.reserve() for _ in range(4)]

    # Then each one waits one more interval than the previous
    for position, wait in enumerate(waits):
        assert position * INTERVAL - SLACK <= wait <= position * INTERVAL


def test_gates_of_different_workers_share_the_slots(redis_client: redis.Redis) -> None:
    # Given two workers, each with its own gate object on the same Redis
    first_worker = ArxivRateGate(redis_client, INTERVAL, key=KEY)
    second_worker = ArxivRateGate(redis_client, INTERVAL, key=KEY)

    # When both reserve
    first_worker.reserve()
    wait = second_worker.reserve()

    # Then the second waits for the first's interval
    assert INTERVAL - SLACK <= wait <= INTERVAL


def test_concurrent_reservations_get_distinct_spaced_slots() -> None:
    # Given many threads, each with its own connection, reserving at the same moment
    server = fakeredis.FakeServer()
    threads_count = 24
    start_together = threading.Barrier(threads_count)
    waits: list[float] = []
    waits_lock = threading.Lock()

    def reserve_one() -> None:
        gate = ArxivRateGate(fakeredis.FakeRedis(server=server), INTERVAL, key=KEY)
        start_together.wait()
        wait = gate.reserve()
        with waits_lock:
            waits.append(wait)

    threads = [threading.Thread(target=reserve_one) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every thread got its own slot, one interval after another
    assert len(waits) == threads_count
    for position, wait in enumerate(sorted(waits)):
        assert position * INTERVAL - SLACK <= wait <= position * INTERVAL


def test_wait_for_turn_sleeps_until_the_slot() -> None:
    # Given a gate whose sleeping we can observe
    slept: list[float] = []
    gate = ArxivRateGate(fakeredis.FakeRedis(), INTERVAL, key=KEY, sleep=slept.append)

    # When two requests wait for their turn
    first = gate.wait_for_turn()
    second = gate.wait_for_turn()

    # Then the first goes at once without sleeping, the second sleeps one interval
    assert first == 0.0
    assert INTERVAL - SLACK <= second <= INTERVAL
    assert slept == [second]


def test_the_key_expires_soon_after_the_next_free_slot(redis_client: redis.Redis) -> None:
    gate = ArxivRateGate(redis_client, 3.0, key=KEY)

    gate.reserve()
    gate.reserve()

    # Two slots taken: the next free one is ~6 s away, and the key will not outlive it by much
    assert 6_000 <= redis_client.pttl(KEY) <= 6_000 + 2_000


def test_cooldown_reports_the_wait_without_reserving(redis_client: redis.Redis) -> None:
    # Given one slot taken
    gate = ArxivRateGate(redis_client, INTERVAL, key=KEY)
    gate.reserve()

    # When a health check asks how long until the next request, twice
    first_look = gate.cooldown_remaining()
    second_look = gate.cooldown_remaining()

    # Then both see one interval, and the next reservation still gets that slot
    assert INTERVAL - SLACK <= first_look <= INTERVAL
    assert INTERVAL - SLACK <= second_look <= first_look
    assert INTERVAL - SLACK <= gate.reserve() <= INTERVAL


def test_cooldown_of_an_idle_gate_is_zero_and_leaves_no_key(redis_client: redis.Redis) -> None:
    gate = ArxivRateGate(redis_client, INTERVAL, key=KEY)

    assert gate.cooldown_remaining() == 0.0
    assert redis_client.exists(KEY) == 0


def test_an_interval_of_zero_never_calls_redis() -> None:
    # Given a Redis that fails every command
    server = fakeredis.FakeServer()
    server.connected = False
    slept: list[float] = []
    gate = ArxivRateGate(fakeredis.FakeRedis(server=server), 0, key=KEY, sleep=slept.append)

    # Then the switched-off gate lets every request through at once
    assert [gate.wait_for_turn() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert gate.reserve() == 0.0
    assert gate.cooldown_remaining() == 0.0
    assert slept == []


def test_the_gate_works_with_a_decoding_client() -> None:
    gate = ArxivRateGate(fakeredis.FakeRedis(decode_responses=True), INTERVAL, key=KEY)

    gate.reserve()

    assert INTERVAL - SLACK <= gate.reserve() <= INTERVAL


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="min_interval_seconds"):
        ArxivRateGate(fakeredis.FakeRedis(), -1.0)
