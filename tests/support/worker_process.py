"""A real research-arm worker as a child process, and the research-arm command line."""

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


def run_cli(
    *args: str, env: Mapping[str, str], timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """`research-arm ARGS` run to its end, `env` added to this process's environment.

    Output is captured as text; a non-zero exit is returned, not raised.
    """
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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

    def pool_pids(self) -> list[int]:
        """The pids of the worker's pool processes (prefork children; none for threads)."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text("ascii")
        except OSError:  # the worker is gone
            return []
        return [int(child) for child in children.split()]

    def process_ids(self) -> list[int]:
        """The worker's own pid and those of its pool processes."""
        return [self.pid, *self.pool_pids()]

    def peak_rss_mib(self) -> float:
        """The largest peak resident set (VmHWM) among the worker's processes, in MiB."""
        return max((_peak_rss_kib(pid) for pid in self.process_ids()), default=0) / 1024

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


def _peak_rss_kib(pid: int) -> int:
    """VmHWM of process `pid` in KiB; 0 for a process that has gone (or is a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
