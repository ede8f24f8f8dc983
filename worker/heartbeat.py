"""The worker's heartbeat: a file rewritten every few seconds, read by the sidecar.

`HeartbeatWriter` beats from a plain daemon thread, not from the consumer's
event loop: that loop blocks while Celery reconnects to a lost broker, and a
broker outage must not make the worker look dead. A thread stops with its
process, so a frozen (SIGSTOPped) or hung-at-the-interpreter worker stops
beating and its beat grows stale.

Two Celery bootsteps wire it in (`install_heartbeat` adds them to the app):
one on the worker blueprint starts and stops the thread with the worker; one
on the consumer blueprint marks the beat `consuming` / `broker_ok` while the
task consumer runs, and clears the marks while the consumer reconnects or
shuts down.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from celery import Celery, bootsteps

from worker.heartbeat_file import Heartbeat, write_heartbeat
from worker.settings import load_settings

log = structlog.get_logger("research_arm.heartbeat")


class HeartbeatWriter:
    """Writes this process's beat to `path` every `interval_seconds` from a daemon thread."""

    def __init__(
        self,
        path: Path,
        hostname: str,
        interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Args:
            path: the heartbeat file (its directory is created if missing).
            hostname: the worker's node name, written into every beat.
            interval_seconds: time between two beats.
            clock: the wall clock beats are stamped with; tests pass their own.
        """
        self.path = path
        self.hostname = hostname
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._consuming = False
        self._broker_ok = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Write a first beat now, then keep beating until `stop`."""
        self.beat()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="research-arm-heartbeat", daemon=True
        )
        self._thread.start()
        log.info("heartbeat_started", path=str(self.path), interval_s=self.interval_seconds)

    def stop(self) -> None:
        """Stop beating; the last beat says the worker no longer consumes, and then ages out."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_seconds + 1)
            self._thread = None
        self.mark(consuming=False, broker_ok=False)

    terminate = stop

    def mark(self, *, consuming: bool, broker_ok: bool) -> None:
        """Record the consumer's state and write it at once, so readiness follows promptly."""
        with self._lock:
            self._consuming = consuming
            self._broker_ok = broker_ok
        self.beat()

    def beat(self) -> None:
        """Write one beat; a failed write is logged and retried at the next beat."""
        with self._lock:
            beat = Heartbeat(
                pid=os.getpid(),
                hostname=self.hostname,
                time=self._clock(),
                interval=self.interval_seconds,
                consuming=self._consuming,
                broker_ok=self._broker_ok,
            )
        try:
            write_heartbeat(self.path, beat)
        except OSError as exc:
            if not self._failing:  # once per streak of failures, not every beat
                log.warning("heartbeat_write_failed", path=str(self.path), error=str(exc))
            self._failing = True
        else:
            self._failing = False

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_seconds):
            self.beat()


class WorkerHeartbeatStep(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Worker blueprint step: the heartbeat thread lives as long as the worker."""

    label = "research-arm heartbeat"

    def create(self, worker: Any) -> HeartbeatWriter:
        settings = load_settings()
        writer = HeartbeatWriter(
            settings.effective_heartbeat_file, worker.hostname, settings.heartbeat_interval_seconds
        )
        worker.research_heartbeat = writer
        return writer


class ConsumingStep(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Consumer blueprint step: marks the beat while the task consumer runs.

    Celery starts this step once the task consumer is up, and stops it when
    the broker connection is lost (before reconnecting) or at shutdown.
    """

    label = "research-arm consuming mark"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer: Any) -> None:
        self._mark(consumer, consuming=True)

    def stop(self, consumer: Any) -> None:
        self._mark(consumer, consuming=False)

    shutdown = stop

    @staticmethod
    def _mark(consumer: Any, *, consuming: bool) -> None:
        writer = getattr(consumer.controller, "research_heartbeat", None)
        if writer is not None:
            # The consumer runs only on a live broker connection: both marks move together.
            writer.mark(consuming=consuming, broker_ok=consuming)


def install_heartbeat(app: Celery) -> None:
    """Add the heartbeat steps to `app`'s worker and consumer blueprints."""
    app.steps["worker"].add(WorkerHeartbeatStep)
    app.steps["consumer"].add(ConsumingStep)
