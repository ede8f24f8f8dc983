"""`research-arm sidecar`: the endpoints Kubernetes, Prometheus and people ask a worker pod.

A process of its own beside the worker, small and quick to start: the
standard library's HTTP server and redis-py, never Celery (it reads the
worker's heartbeat file and Redis instead of asking the worker over the broker).

    GET /livez         200 while the worker's heartbeat is fresh; reads one file, nothing else
    GET /readyz        200 while the worker consumes and Redis and Qdrant answer
                       (the corpus is reported, not required)
    GET /health        HealthStatus with per-dependency detail (503 when unhealthy)
    GET /capabilities  the CapabilityManifest with both JSON Schemas
    GET /metrics       Prometheus text: the worker processes' metrics and the queue

`research-arm check` answers the liveness question as an exit code, for exec
probes and Docker's HEALTHCHECK.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.health import DependencyHealth
from tasks.constants import PENDING_STORE_KEY, QUEUE
from tasks.corpus_status import read_corpus_status
from tasks.rate_gate import ArxivRateGate
from tasks.version import arm_version
from worker import health_checks as checks
from worker.capabilities import capability_manifest
from worker.heartbeat_file import Heartbeat, read_heartbeat
from worker.metrics import ScrapeValues, sidecar_registry
from worker.settings import Settings

log = structlog.get_logger("research_arm.sidecar")

JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    @classmethod
    def json(cls, status: int, data: Any) -> Reply:
        return cls(status, JSON, json.dumps(data, indent=2).encode() + b"\n")


class Sidecar:
    """The checks behind each endpoint, for one worker (its heartbeat file) and its Redis."""

    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Args:
            settings: the worker's settings (heartbeat file, TTL, Qdrant, metrics dir).
            redis_client: the broker, built with `health_checks.sidecar_redis`;
                None when no broker is configured (readiness then fails).
            clock: wall-clock time, compared with the heartbeat's stamp.
        """
        self.settings = settings
        self._redis = redis_client
        self._clock = clock
        self._gate = (
            ArxivRateGate(redis_client, settings.arxiv_min_interval_seconds)
            if redis_client is not None
            else None
        )
        # Built once: the manifest only changes with the code.
        manifest = capability_manifest().model_dump(mode="json")
        self._capabilities = Reply.json(HTTPStatus.OK, manifest)
        self._registry = sidecar_registry(settings.effective_metrics_dir, self.scrape_values)
        self._version = arm_version()

    # --- the endpoints -------------------------------------------------------------

    def livez(self) -> Reply:
        beat, alive = self._liveness()
        return Reply.json(
            HTTPStatus.OK if alive.ok else HTTPStatus.SERVICE_UNAVAILABLE,
            {"status": "alive" if alive.ok else "dead", "detail": alive.detail, **_beat_json(beat)},
        )

    def readyz(self) -> Reply:
        beat, alive = self._liveness()
        redis_health = self._check_redis()
        qdrant = self._check_qdrant()
        ready = checks.readiness(alive, beat, redis_health, qdrant)
        return Reply.json(
            HTTPStatus.OK if ready.ok else HTTPStatus.SERVICE_UNAVAILABLE,
            {
                "status": "ready" if ready.ok else "not_ready",
                "detail": ready.detail,
                "checks": {
                    "worker": checks.worker_health(alive, beat).model_dump(),
                    "redis": redis_health.model_dump(),
                    "qdrant": qdrant.model_dump(),
                    "corpus": self._check_corpus().model_dump(),
                },
            },
        )

    def health(self) -> Reply:
        beat, alive = self._liveness()
        redis_health = self._check_redis()
        dependencies = {
            "worker": checks.worker_health(alive, beat),
            "redis": redis_health,
            "qdrant": self._check_qdrant(),
            "corpus": self._check_corpus(),
            "llm": checks.llm_health(self.settings.llm_configured, self.settings.llm_model),
            "arxiv_gate": self._check_gate(redis_health)[0],
        }
        status = checks.health_status(self._version, dependencies)
        code = HTTPStatus.SERVICE_UNAVAILABLE if status.status == "unhealthy" else HTTPStatus.OK
        return Reply.json(code, status.model_dump(mode="json"))

    def capabilities(self) -> Reply:
        return self._capabilities

    def metrics(self) -> Reply:
        return Reply(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self._registry))

    # --- what they read ------------------------------------------------------------

    def scrape_values(self) -> ScrapeValues:
        """Everything the scrape-time gauges show, read now."""
        beat, alive = self._liveness()
        redis_health = self._check_redis()
        qdrant = self._check_qdrant()
        ready = checks.readiness(alive, beat, redis_health, qdrant)
        waiting = unacked = pending = None
        cooldown = None
        if self._redis is not None and redis_health.status == "ok":
            try:
                depth = checks.queue_depth(self._redis, QUEUE)
                waiting, unacked = depth.waiting, depth.unacked
                pending = int(self._redis.llen(PENDING_STORE_KEY))
            except redis.RedisError as exc:
                log.warning("scrape_redis_failed", error=str(exc))
            _, cooldown = self._check_gate(redis_health)
        dependencies = {"redis": redis_health.status == "ok"}
        if qdrant.status != "not_configured":
            dependencies["qdrant"] = qdrant.status == "ok"
        return ScrapeValues(
            queue=QUEUE,
            queue_waiting=waiting,
            queue_unacked=unacked,
            worker_hostname=beat.hostname if beat else "",
            worker_alive=alive.ok,
            worker_ready=ready.ok,
            heartbeat_age_seconds=beat.age(self._clock()) if beat else None,
            dependencies=dependencies,
            arxiv_gate_cooldown_seconds=cooldown,
            pending_store_batches=pending,
        )

    def _liveness(self) -> tuple[Heartbeat | None, checks.Verdict]:
        beat = read_heartbeat(self.settings.effective_heartbeat_file)
        return beat, checks.liveness(beat, self._clock(), self.settings.heartbeat_ttl_seconds)

    def _check_redis(self) -> DependencyHealth:
        if self._redis is None:
            return DependencyHealth(status="down", detail="no broker configured (REDIS_URL)")
        return checks.check_redis(self._redis)

    def _check_qdrant(self) -> DependencyHealth:
        settings = self.settings
        if settings.qdrant_url:
            api_key = (
                settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            )
            return checks.check_qdrant_server(
                settings.qdrant_url, api_key, settings.health_check_timeout_seconds
            )
        return checks.check_qdrant_path(settings.effective_qdrant_path)

    def _check_corpus(self) -> DependencyHealth:
        # A file the worker and `corpus ingest` write: the embedded store is
        # file-locked by the worker and never opened here.
        return checks.corpus_health(read_corpus_status(self.settings.data_dir))

    def _check_gate(self, redis_health: DependencyHealth) -> tuple[DependencyHealth, float | None]:
        if self._gate is None or redis_health.status != "ok":
            # The gate lives in Redis: without it, say so rather than wait again.
            return DependencyHealth(status="down", detail="unknown: redis is down"), None
        return checks.arxiv_gate_health(self._gate)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


ROUTES: dict[str, Callable[[Sidecar], Reply]] = {
    "/livez": Sidecar.livez,
    "/readyz": Sidecar.readyz,
    "/health": Sidecar.health,
    "/capabilities": Sidecar.capabilities,
    "/metrics": Sidecar.metrics,
}


class _Handler(BaseHTTPRequestHandler):
    server: SidecarServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        route = ROUTES.get(self.path.split("?", 1)[0])
        if route is None:
            reply = Reply.json(HTTPStatus.NOT_FOUND, {"error": "not found", "paths": list(ROUTES)})
        else:
            try:
                reply = route(self.server.sidecar)
            except Exception as exc:  # a bug must not take the probe endpoint down with it
                log.exception("sidecar_endpoint_failed", path=self.path)
                reply = Reply.json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": type(exc).__name__})
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes arrive every few seconds: no access log.
        pass


class SidecarServer(ThreadingHTTPServer):
    daemon_threads = True
    # Several pods' sidecars never share a port, but a restarted one must
    # bind at once even while the old socket lingers in TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sidecar: Sidecar) -> None:
        super().__init__(address, _Handler)
        self.sidecar = sidecar


def build_sidecar(settings: Settings) -> Sidecar:
    try:
        url = settings.broker_url()
    except RuntimeError as exc:
        log.warning("sidecar_without_broker", error=str(exc))
        return Sidecar(settings, None)
    return Sidecar(settings, checks.sidecar_redis(url, settings.health_check_timeout_seconds))


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code."""
    sidecar = build_sidecar(settings)
    server = SidecarServer((host or settings.health_host, port or settings.health_port), sidecar)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    thread = threading.Thread(target=server.serve_forever, name="sidecar-http", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    log.info(
        "sidecar_listening",
        address=f"http://{bound_host!s}:{bound_port}",
        heartbeat_file=str(settings.effective_heartbeat_file),
        metrics_dir=str(settings.effective_metrics_dir),
    )
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        sidecar.close()
        log.info("sidecar_stopped")
    return 0


def check_liveness(settings: Settings) -> int:
    """`research-arm check`: 0 if the worker's heartbeat is fresh, 1 if not (reason on stderr)."""
    beat = read_heartbeat(settings.effective_heartbeat_file)
    alive = checks.liveness(beat, time.time(), settings.heartbeat_ttl_seconds)
    print(
        f"{'alive' if alive.ok else 'dead'}: {alive.detail}",
        file=sys.stdout if alive.ok else sys.stderr,
    )
    return 0 if alive.ok else 1


def _beat_json(beat: Heartbeat | None) -> dict[str, Any]:
    if beat is None:
        return {}
    return {
        "worker": {
            "pid": beat.pid,
            "hostname": beat.hostname,
            "consuming": beat.consuming,
            "broker_ok": beat.broker_ok,
        }
    }
