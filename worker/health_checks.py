"""What the health sidecar checks, as small functions of what it reads.

- Liveness: the worker's heartbeat is younger than HEARTBEAT_TTL_SECONDS.
  Nothing else: no broker round-trip, no `celery inspect`, no arXiv, so a
  broker outage never gets a healthy worker restarted.
- Readiness: alive, the worker's task consumer runs, Redis answers PING and
  Qdrant answers (a server's /readyz, or an embedded store's directory).
- Health: the seed's HealthStatus with one entry per dependency.

Everything here reads Redis or the file system, with short timeouts; nothing
calls arXiv (the gate's cooldown is a Redis read) and nothing imports Celery.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from schemas.health import DependencyHealth, HealthStatus
from tasks.corpus_status import CorpusStatus
from tasks.rate_gate import ArxivRateGate
from worker.heartbeat_file import Heartbeat
from worker.logs import redact_text

# kombu's Redis transport keeps a queue's messages in the list named after the
# queue, plus one list per priority step (0, 3, 6, 9) named queue + sep + step
# (kombu.transport.redis: Channel.sep, PRIORITY_STEPS), and every delivered,
# unacknowledged message in the hash `unacked` as JSON [message, exchange,
# routing_key] (Channel.unacked_key, QoS.append).
KOMBU_PRIORITY_SEPARATOR: Final = "\x06\x16"
KOMBU_PRIORITY_STEPS: Final = (3, 6, 9)
KOMBU_UNACKED_KEY: Final = "unacked"

# Counts, inside Redis, the unacked messages whose routing key is ARGV[1]: the
# key is the last string of each value, so only its tail is looked at, no
# message body crosses the network, and HSCAN keeps a few hundred in memory at a time.
_COUNT_UNACKED_SCRIPT: Final = """
local count = 0
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 200)
  cursor = page[1]
  local entries = page[2]
  for i = 2, #entries, 2 do
    local routing_key = string.match(string.sub(entries[i], -256), '"([^"]*)"%]$')
    if routing_key == ARGV[1] then count = count + 1 end
  end
until cursor == '0'
return count
"""

Status = Literal["healthy", "degraded", "unhealthy"]


@dataclass(frozen=True)
class Verdict:
    """A check's answer and, for people, why."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class QueueDepth:
    waiting: int
    unacked: int


def liveness(beat: Heartbeat | None, now: float, ttl_seconds: float) -> Verdict:
    """Alive if the newest beat is at most `ttl_seconds` old at `now` (Unix seconds)."""
    if beat is None:
        return Verdict(False, "no heartbeat yet (worker not started, or the file is unreadable)")
    age = beat.age(now)
    if age > ttl_seconds:
        return Verdict(False, f"last heartbeat {age:.1f} s ago, over the {ttl_seconds:g} s limit")
    return Verdict(True, f"pid {beat.pid} on {beat.hostname}, beat {age:.1f} s ago")


def readiness(
    alive: Verdict, beat: Heartbeat | None, redis_health: DependencyHealth, qdrant: DependencyHealth
) -> Verdict:
    """Ready when alive, consuming, and Redis and Qdrant answer; else the reasons why not."""
    reasons = []
    if not alive.ok:
        reasons.append(f"worker not alive: {alive.detail}")
    elif beat is None or not beat.consuming:
        reasons.append("worker not consuming (starting, reconnecting to the broker or stopping)")
    if redis_health.status != "ok":
        reasons.append(f"redis: {redis_health.detail}")
    if qdrant.status not in ("ok", "not_configured"):
        reasons.append(f"qdrant: {qdrant.detail}")
    if reasons:
        return Verdict(False, "; ".join(reasons))
    return Verdict(True, "consuming; redis and qdrant answer")


def worker_health(alive: Verdict, beat: Heartbeat | None) -> DependencyHealth:
    if not alive.ok:
        return DependencyHealth(status="down", detail=alive.detail)
    if beat is None or not beat.consuming:
        return DependencyHealth(status="degraded", detail=f"alive, not consuming; {alive.detail}")
    return DependencyHealth(status="ok", detail=f"consuming; {alive.detail}")


def sidecar_redis(url: str, timeout_seconds: float) -> redis.Redis:
    """A Redis client for checks: short timeouts, no backoff, no retry after a timeout.

    A broken connection is retried once, at once: it is a pooled connection
    that died with a restarted Redis. A timeout is not retried, so a hung Redis
    holds a probe for one timeout only.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


def check_redis(client: redis.Redis) -> DependencyHealth:
    """PING the broker."""
    try:
        client.ping()
    except redis.RedisError as exc:
        return DependencyHealth(status="down", detail=_error_text(exc))
    return DependencyHealth(status="ok", detail="PING answered")


def queue_depth(client: redis.Redis, queue: str) -> QueueDepth:
    """Messages waiting in `queue` (every priority list) and delivered but unacknowledged.

    Raises:
        redis.RedisError: Redis did not answer.
    """
    lists = [queue, *(f"{queue}{KOMBU_PRIORITY_SEPARATOR}{step}" for step in KOMBU_PRIORITY_STEPS)]
    with client.pipeline(transaction=False) as pipe:
        for name in lists:
            pipe.llen(name)
        waiting = sum(int(size) for size in pipe.execute())
    unacked = client.eval(_COUNT_UNACKED_SCRIPT, 1, KOMBU_UNACKED_KEY, queue)
    return QueueDepth(waiting=waiting, unacked=int(unacked))


def check_qdrant_server(url: str, api_key: str | None, timeout_seconds: float) -> DependencyHealth:
    """GET the server's /readyz (Qdrant answers it without authentication)."""
    request = urllib.request.Request(url.rstrip("/") + "/readyz")
    if api_key:
        request.add_header("api-key", api_key)
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return DependencyHealth(status="down", detail=f"{_host_of(url)}/readyz: HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        return DependencyHealth(status="down", detail=f"{_host_of(url)}: {_error_text(exc)}")
    return DependencyHealth(status="ok", detail=f"{_host_of(url)}/readyz: HTTP {status}")


def check_qdrant_path(path: Path) -> DependencyHealth:
    """An embedded store's directory exists and is writable, or can be created.

    The store itself is never opened: the worker holds its file lock.
    """
    if path.is_dir():
        if os.access(path, os.W_OK | os.X_OK):
            return DependencyHealth(status="ok", detail=f"embedded store at {path}")
        return DependencyHealth(status="down", detail=f"embedded store {path} is not writable")
    if path.exists():
        return DependencyHealth(status="down", detail=f"embedded store {path} is not a directory")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK):
        return DependencyHealth(status="ok", detail=f"embedded store {path} not created yet")
    return DependencyHealth(status="down", detail=f"cannot create the embedded store {path}")


def corpus_health(status: CorpusStatus | None) -> DependencyHealth:
    """The corpus as the worker or the last ingest recorded it in DATA_DIR (no store opened).

    No corpus is not a fault: jobs then search arXiv for everything.
    """
    if status is None or not status.coverage:
        return DependencyHealth(status="ok", detail="no corpus ingested: jobs search arXiv")
    return DependencyHealth(
        status="ok",
        detail=(
            f"{status.records} papers in {status.collection}, watermark "
            f"{status.watermark}, model {status.embedding_model} "
            f"(as of {status.updated_at.isoformat(timespec='seconds')})"
        ),
    )


def llm_health(configured: bool, model: str | None) -> DependencyHealth:
    """Configuration only: calling the LLM from a probe would spend tokens."""
    if configured:
        return DependencyHealth(status="ok", detail=f"configured: {model}")
    return DependencyHealth(
        status="not_configured", detail="no LLM configured: summaries are extractive"
    )


def arxiv_gate_health(gate: ArxivRateGate) -> tuple[DependencyHealth, float | None]:
    """Whether the global arXiv gate is cooling down, read from Redis (arXiv is never called).

    Returns the health entry and the seconds until the next free slot (None if unknown).
    """
    if not gate.enabled:
        return DependencyHealth(status="ok", detail="gate off (ARXIV_MIN_INTERVAL_SECONDS=0)"), 0.0
    try:
        remaining = gate.cooldown_remaining()
    except redis.RedisError as exc:
        return DependencyHealth(status="down", detail=f"unknown: {_error_text(exc)}"), None
    if remaining > 0:
        return DependencyHealth(
            status="ok", detail=f"cooling down: next request slot in {remaining:.3f} s"
        ), remaining
    return DependencyHealth(status="ok", detail="free: the next request goes at once"), 0.0


def overall_status(dependencies: dict[str, DependencyHealth]) -> Status:
    """Unhealthy if the worker or Redis is down; degraded if anything else is not ok."""
    essential = ("worker", "redis")
    if any(dependencies[name].status != "ok" for name in essential if name in dependencies):
        return "unhealthy"
    if any(dep.status != "ok" for dep in dependencies.values()):
        return "degraded"
    return "healthy"


def health_status(
    version: str, dependencies: dict[str, DependencyHealth], now: datetime | None = None
) -> HealthStatus:
    return HealthStatus(
        status=overall_status(dependencies),
        version=version,
        timestamp=now or datetime.now(UTC),
        dependencies=dependencies,
    )


def _host_of(url: str) -> str:
    return redact_text(url.rstrip("/"))


def _error_text(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")
