"""The sidecar's checks: heartbeat liveness, readiness, dependencies, queue depth, arXiv gate."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from kombu.transport import redis as kombu_redis

from schemas.health import DependencyHealth
from tasks.rate_gate import ArxivRateGate
from worker import health_checks as checks
from worker.heartbeat import HeartbeatWriter
from worker.heartbeat_file import Heartbeat, read_heartbeat, write_heartbeat
from worker.local_redis import free_port

OK = DependencyHealth(status="ok", detail="")
DOWN = DependencyHealth(status="down", detail="connection refused")


def beat(*, time: float = 1000.0, consuming: bool = True) -> Heartbeat:
    return Heartbeat(
        pid=42, hostname="research@pod", time=time, interval=5, consuming=consuming, broker_ok=True
    )


# --- the heartbeat file and its writer ------------------------------------------------


def test_a_written_beat_reads_back_and_others_may_read_it(tmp_path: Path) -> None:
    path = tmp_path / "run" / "worker.heartbeat"

    write_heartbeat(path, beat())

    assert read_heartbeat(path) == beat()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["worker.heartbeat"]  # no temp file left


@pytest.mark.parametrize("content", [None, "", "{not json", '{"pid": 1}', "[1, 2]"])
def test_a_missing_or_damaged_beat_reads_as_none(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "worker.heartbeat"
    if content is not None:
        path.write_text(content)

    assert read_heartbeat(path) is None


def test_the_writer_beats_on_its_interval_and_marks_consumption_at_once(tmp_path: Path) -> None:
    path = tmp_path / "worker.heartbeat"
    writer = HeartbeatWriter(path, "research@pod", interval_seconds=0.05)

    writer.start()
    try:
        first = read_heartbeat(path)
        assert first is not None and not first.consuming and first.pid == os.getpid()
        writer.mark(consuming=True, broker_ok=True)
        marked = read_heartbeat(path)
        assert marked is not None and marked.consuming and marked.broker_ok
        time.sleep(0.3)
        later = read_heartbeat(path)
        assert later is not None and later.time > marked.time and later.consuming
    finally:
        writer.stop()

    stopped = read_heartbeat(path)
    assert stopped is not None and not stopped.consuming and not stopped.broker_ok
    time.sleep(0.15)
    assert read_heartbeat(path) == stopped  # no beat after stop


# --- liveness and readiness -----------------------------------------------------------


def test_a_fresh_beat_is_alive_and_a_stale_or_missing_one_is_not() -> None:
    assert checks.liveness(beat(time=1000.0), now=1029.0, ttl_seconds=30).ok
    stale = checks.liveness(beat(time=1000.0), now=1031.0, ttl_seconds=30)
    assert not stale.ok and "31.0 s ago" in stale.detail
    assert not checks.liveness(None, now=1000.0, ttl_seconds=30).ok


def test_ready_needs_a_live_consuming_worker_redis_and_qdrant() -> None:
    alive = checks.Verdict(True, "beat 1 s ago")
    dead = checks.Verdict(False, "last heartbeat 40 s ago")

    assert checks.readiness(alive, beat(), OK, OK).ok
    not_consuming = checks.readiness(alive, beat(consuming=False), OK, OK)
    assert not not_consuming.ok and "not consuming" in not_consuming.detail
    redis_down = checks.readiness(alive, beat(), DOWN, OK)
    assert not redis_down.ok and "redis: connection refused" in redis_down.detail
    assert not checks.readiness(alive, beat(), OK, DOWN).ok
    assert "worker not alive" in checks.readiness(dead, beat(), OK, OK).detail


def test_overall_status_is_unhealthy_without_worker_or_redis_and_degraded_otherwise() -> None:
    ok = {"worker": OK, "redis": OK, "qdrant": OK, "llm": OK}
    assert checks.overall_status(ok) == "healthy"
    assert checks.overall_status({**ok, "qdrant": DOWN}) == "degraded"
    no_llm = DependencyHealth(status="not_configured", detail="")
    assert checks.overall_status({**ok, "llm": no_llm}) == "degraded"
    assert checks.overall_status({**ok, "redis": DOWN}) == "unhealthy"
    assert checks.overall_status({**ok, "worker": DOWN}) == "unhealthy"


# --- dependencies ---------------------------------------------------------------------


def test_redis_answers_ping_or_is_down() -> None:
    assert checks.check_redis(fakeredis.FakeRedis()).status == "ok"
    closed = checks.sidecar_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)

    health = checks.check_redis(closed)

    assert health.status == "down" and "ConnectionError" in health.detail


def test_an_embedded_qdrant_directory_is_checked_without_opening_it(tmp_path: Path) -> None:
    store = tmp_path / "qdrant"
    assert checks.check_qdrant_path(store).detail.endswith("not created yet")
    store.mkdir()
    assert checks.check_qdrant_path(store).status == "ok"
    (tmp_path / "file").write_text("")
    assert checks.check_qdrant_path(tmp_path / "file").status == "down"


@pytest.fixture
def qdrant_like_server() -> Iterator[tuple[str, list[int]]]:
    """A server answering /readyz with the status at the head of the returned list."""
    statuses = [200]
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "api-key": self.headers.get("api-key")})
            self.send_response(statuses[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", statuses
    finally:
        server.shutdown()
        server.server_close()
    assert all(request["path"] == "/readyz" for request in seen)


def test_a_qdrant_server_is_asked_its_readyz(qdrant_like_server: tuple[str, list[int]]) -> None:
    url, statuses = qdrant_like_server
    assert checks.check_qdrant_server(url, "key", timeout_seconds=1).status == "ok"
    statuses[0] = 503
    down = checks.check_qdrant_server(url, None, timeout_seconds=1)
    assert down.status == "down" and "HTTP 503" in down.detail
    unreachable = f"http://127.0.0.1:{free_port()}"
    assert checks.check_qdrant_server(unreachable, None, timeout_seconds=1).status == "down"


def test_llm_health_reports_configuration_only() -> None:
    assert checks.llm_health(True, "gpt-x").detail == "configured: gpt-x"
    assert checks.llm_health(False, None).status == "not_configured"


def test_the_arxiv_gate_cooldown_is_read_from_redis() -> None:
    client = fakeredis.FakeRedis()
    gate = ArxivRateGate(client, min_interval_seconds=3)

    health, remaining = checks.arxiv_gate_health(gate)
    assert health.detail.startswith("free") and remaining == 0
    gate.reserve()
    health, remaining = checks.arxiv_gate_health(gate)
    assert health.detail.startswith("cooling down") and remaining is not None and remaining > 2
    off, _ = checks.arxiv_gate_health(ArxivRateGate(client, min_interval_seconds=0))
    assert "gate off" in off.detail


# --- queue depth ----------------------------------------------------------------------


def test_our_copy_of_kombus_key_layout_matches_kombu() -> None:
    assert kombu_redis.Channel.sep == checks.KOMBU_PRIORITY_SEPARATOR
    assert tuple(step for step in kombu_redis.PRIORITY_STEPS if step) == checks.KOMBU_PRIORITY_STEPS
    assert kombu_redis.Channel.unacked_key == checks.KOMBU_UNACKED_KEY


def test_queue_depth_counts_every_priority_list_and_only_this_queues_unacked() -> None:
    client = fakeredis.FakeRedis()
    client.lpush("research", "m1", "m2")
    client.lpush("research\x06\x166", "m3")
    client.lpush("other", "x")
    body = json.dumps({"body": "a" * 5000, "headers": {"routing_key": "other"}})
    client.hset("unacked", "tag-1", json.dumps([body, "research", "research"]))
    client.hset("unacked", "tag-2", json.dumps([body, "", "research"]))
    client.hset("unacked", "tag-3", json.dumps([body, "other", "other"]))
    for n in range(450):  # more than one HSCAN page
        client.hset("unacked", f"page-{n}", json.dumps(["{}", "", "research" if n % 3 else "x"]))

    depth = checks.queue_depth(client, "research")

    assert depth == checks.QueueDepth(waiting=3, unacked=2 + 300)
