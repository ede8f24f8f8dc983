"""`research-arm up`: the whole local stack in the foreground.

It starts an embedded Redis when REDIS_URL is unset (data under DATA_DIR),
a worker, its health sidecar and, on request, Flower (basic auth on), all
logging in the format `up` chose for itself; records the stack's addresses
in DATA_DIR/stack.json so `research-arm submit` from the same directory
finds it; and on Ctrl-C or SIGTERM stops every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import structlog

from worker.flower import flower_launch
from worker.local_redis import RedisServer
from worker.logs import LogFormat
from worker.settings import Settings

log = structlog.get_logger("research_arm.stack")


@dataclass
class StackOptions:
    flower: bool = False
    flower_port: int | None = None  # default FLOWER_PORT
    concurrency: int | None = None
    # The format every process of the stack logs in (LOG_FORMAT); None lets
    # each decide by its own stderr.
    log_format: LogFormat | None = None


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    # The stack stops when an essential child dies; the sidecar only reports
    # on it (its port may be taken) and is not essential.
    essential: bool = True


@dataclass
class LocalStack:
    settings: Settings
    options: StackOptions
    redis: RedisServer | None = None
    children: list[_Child] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        """Start everything, wait until asked to stop or a child dies; returns an exit code."""
        self._install_signal_handlers()
        try:
            redis_url = self._start_redis()
            env = self._child_env(redis_url)
            self._spawn("worker", self._worker_argv(), env)
            self._spawn("sidecar", self._sidecar_argv(), env, essential=False)
            flower = (
                flower_launch(self.settings, self.options.flower_port)
                if self.options.flower
                else None
            )
            if flower is not None:
                self._spawn("flower", flower.argv, env | flower.env)
            self._record(redis_url)
            log.info(
                "stack_up",
                redis=redis_url,
                data_dir=str(self.settings.data_dir.resolve()),
                sidecar=f"http://127.0.0.1:{self.settings.health_port}",
                flower=flower.url if flower else None,
                flower_credentials=str(flower.credentials_file)
                if flower and flower.credentials_file
                else None,
            )
            return self._wait()
        finally:
            self.shutdown()

    def _install_signal_handlers(self) -> None:
        def request_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("stack_stopping", signal=signal.Signals(signum).name)
            self.stop_requested.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    def _start_redis(self) -> str:
        if self.settings.redis_url is not None:
            return self.settings.redis_url.get_secret_value()
        self.redis = RedisServer(data_dir=self.settings.data_dir / "redis", appendonly=True)
        self.redis.start()
        return self.redis.url

    def _child_env(self, redis_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env["REDIS_URL"] = redis_url
        env["DATA_DIR"] = str(self.settings.data_dir.resolve())
        if self.options.log_format is not None:
            env["LOG_FORMAT"] = self.options.log_format
        return env

    def _worker_argv(self) -> list[str]:
        argv = [sys.executable, "-m", "worker.cli", "worker"]
        if self.options.concurrency:
            argv += ["--concurrency", str(self.options.concurrency)]
        return argv

    def _sidecar_argv(self) -> list[str]:
        # Loopback only, like Flower: the local stack is not a service.
        return [sys.executable, "-m", "worker.cli", "sidecar", "--host=127.0.0.1"]

    def _spawn(
        self, name: str, argv: Sequence[str], env: dict[str, str], *, essential: bool = True
    ) -> None:
        # Own process group: the terminal's Ctrl-C reaches `up` alone, which
        # then stops each child in order.
        process = subprocess.Popen(list(argv), env=env, start_new_session=True)
        self.children.append(_Child(name, process, essential))
        log.info("process_started", process=name, pid=process.pid)

    def _record(self, redis_url: str) -> None:
        stack_file = self.settings.stack_file
        stack_file.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "redis_url": redis_url,
            "pid": os.getpid(),
            "children": {child.name: child.process.pid for child in self.children},
            "started_at": time.time(),
        }
        # The URL may carry a password: readable by this user only.
        fd = os.open(stack_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)

    def _wait(self) -> int:
        while not self.stop_requested.wait(0.5):
            for child in list(self.children):
                code = child.process.poll()
                if code is not None and child.essential:
                    log.error("process_exited", process=child.name, exit_code=code)
                    return 1
                if code is not None:
                    log.warning("process_exited", process=child.name, exit_code=code)
                    self.children.remove(child)
        return 0

    def shutdown(self, grace_seconds: float = 30.0) -> None:
        """Stop the children (SIGTERM, then SIGKILL after the grace period) and Redis."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process_killed", process=child.name)
                child.process.kill()
                child.process.wait()
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        Path(self.settings.stack_file).unlink(missing_ok=True)
