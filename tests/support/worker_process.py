"""A real research-arm worker as a child process, for integration tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    """`research-arm worker` with the given environment; its log goes to `log_path`.

    `env` is added to a copy of the test's environment, with REDIS_URL required.
    """

    env: Mapping[str, str]
    log_path: Path
    concurrency: int = 8
    pool: str = "threads"
    hostname: str = "research-test@%h"
    # The module run as `python -m MODULE worker …`: the product's CLI, or a
    # wrapper that registers extra tasks (the benchmark's no-op chain).
    module: str = "worker.cli"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, ready_timeout: float = 30.0) -> None:
        env = {**os.environ, "LOG_FORMAT": "json", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "worker",
                f"--concurrency={self.concurrency}",
                f"--pool={self.pool}",
                f"--hostname={self.hostname}",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_until_ready(ready_timeout)

    def wait_until_ready(self, timeout: float) -> None:
        """Celery logs '<hostname> ready.' once it consumes; wait for that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_text()[-4000:]}")
            if " ready." in self.log_text():
                return
            time.sleep(0.1)
        self.stop()  # never leave a half-started worker behind
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    def send_signal(self, signum: signal.Signals) -> None:
        assert self.process is not None, "worker not started"
        self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL if it does not go in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
