"""Measure the health sidecar: start time, memory, latency, `check`, and Redis outages.

    .venv/bin/python -m tests.sidecar_footprint [--runs 5]

Starts a private Redis, the fake arXiv server and a real worker (one job
runs, so /metrics merges real worker files), then starts the sidecar `--runs`
times and prints figures; last it stops Redis for 2, 5 and 10 s and times how
soon /readyz fails and how soon it passes again (the worker reconnects), while
checking that /livez never fails. Memory is compared with a bare interpreter of the
same Python. Nothing here asserts: it prints what it measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from tests.support.fake_arxiv import FakeArxivServer
from tests.support.stack import Stack
from tests.support.worker_process import REPO_ROOT
from worker.local_redis import RedisServer, free_port

ENDPOINTS = ("/livez", "/readyz", "/health", "/capabilities", "/metrics")


def answer_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def megabytes(process: psutil.Process) -> tuple[float, float]:
    """RSS and USS (memory only this process holds), in MiB."""
    info = process.memory_full_info()
    return info.rss / 2**20, info.uss / 2**20


def bare_python() -> tuple[float, float]:
    """The memory of an interpreter that imports nothing, for comparison."""
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(1.0)
        return megabytes(psutil.Process(idle.pid))
    finally:
        idle.kill()
        idle.wait()


def start_sidecar(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "sidecar", "--host=127.0.0.1", f"--port={port}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


def run_sidecar(env: dict[str, str]) -> tuple[float, tuple[float, float], dict[str, float]]:
    """Start one sidecar; returns seconds to its first answer, its memory, endpoint latency (ms)."""
    started = time.perf_counter()
    process, base = start_sidecar(env)
    try:
        while answer_status(f"{base}/livez") == 0:
            time.sleep(0.01)
        start_seconds = time.perf_counter() - started
        latency: dict[str, float] = {}
        for path in ENDPOINTS:
            timings = []
            for _ in range(20):
                begin = time.perf_counter()
                answer_status(base + path)
                timings.append((time.perf_counter() - begin) * 1000)
            latency[path] = statistics.median(timings)
        return start_seconds, megabytes(psutil.Process(process.pid)), latency
    finally:
        process.terminate()
        process.wait(timeout=10)


def time_check(env: dict[str, str]) -> float:
    begin = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "worker.cli", "check"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - begin


def time_outages(env: dict[str, str], redis_server: RedisServer) -> list[str]:
    """Stop Redis for a while, several times; one line of figures per outage."""
    process, base = start_sidecar(env)
    lines = []
    try:
        while answer_status(f"{base}/readyz") != 200:
            time.sleep(0.05)
        for outage_seconds in (2, 5, 10):
            stopped = time.monotonic()
            redis_server.stop()
            while answer_status(f"{base}/readyz") == 200:
                time.sleep(0.05)
            unready_after = time.monotonic() - stopped
            always_alive = True
            while time.monotonic() - stopped < outage_seconds:
                always_alive &= answer_status(f"{base}/livez") == 200
                time.sleep(0.2)
            redis_server.start()
            back = time.monotonic()
            while answer_status(f"{base}/readyz") != 200:
                time.sleep(0.1)
            lines.append(
                f"Redis down {outage_seconds:>2} s: /readyz 503 after {unready_after:.2f} s, "
                f"/livez 200 throughout: {always_alive}, "
                f"/readyz 200 again {time.monotonic() - back:.1f} s after Redis returned"
            )
            time.sleep(2)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return lines


def time_inspect_ping(env: dict[str, str]) -> tuple[float, int]:
    """Celery's usual probe, for comparison: a broadcast over the broker, answered by the worker."""
    begin = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.app", "inspect", "ping", "--timeout=1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - begin, completed.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as scratch,
        Stack(Path(scratch), arxiv=FakeArxivServer(), llm=None) as stack,
    ):
        data_dir = str(Path(scratch) / "data")
        stack.start_worker("footprint", pool="prefork", concurrency=1, DATA_DIR=data_dir)
        client = stack.client()
        client.result(client.submit({"query": "graph neural networks"}), timeout=60)
        # The sidecar, `check` and `celery inspect` see what the worker sees.
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            **stack.env(DATA_DIR=data_dir),
            "LOG_FORMAT": "json",
        }
        runs = [run_sidecar(env) for _ in range(args.runs)]
        checks = [time_check(env) for _ in range(args.runs)]
        pings = [time_inspect_ping(env) for _ in range(args.runs)]
        outages = time_outages(env, stack.redis)

    bare_rss, bare_uss = bare_python()
    starts = [run[0] for run in runs]
    rss = [run[1][0] for run in runs]
    uss = [run[1][1] for run in runs]
    print(f"python {sys.version.split()[0]}, {args.runs} runs, {os.cpu_count()} CPUs")
    print(
        f"sidecar start to first /livez answer: median {statistics.median(starts):.3f} s "
        f"(min {min(starts):.3f}, max {max(starts):.3f})"
    )
    print(
        f"sidecar memory after 100 requests: RSS {statistics.median(rss):.1f} MiB, "
        f"USS {statistics.median(uss):.1f} MiB"
    )
    print(f"bare interpreter:                    RSS {bare_rss:.1f} MiB, USS {bare_uss:.1f} MiB")
    print(
        f"beyond the bare interpreter:         RSS +{statistics.median(rss) - bare_rss:.1f} MiB, "
        f"USS +{statistics.median(uss) - bare_uss:.1f} MiB"
    )
    for path in ENDPOINTS:
        median = statistics.median(run[2][path] for run in runs)
        print(f"GET {path:<14} median {median:6.2f} ms")
    print(
        f"research-arm check (process start to exit): median {statistics.median(checks):.3f} s "
        f"(min {min(checks):.3f}, max {max(checks):.3f})"
    )
    ping_seconds = [seconds for seconds, _ in pings]
    print(
        f"for comparison, celery inspect ping: median {statistics.median(ping_seconds):.3f} s "
        f"(exit codes {sorted({code for _, code in pings})})"
    )
    for line in outages:
        print(line)


if __name__ == "__main__":
    main()
