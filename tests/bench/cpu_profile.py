"""Where a worker's CPU goes: py-spy samples of the thread holding the GIL, by kind of work.

py-spy is not a dependency of the project: `.venv/bin/pip install py-spy` to
use `make bench ARGS=--profile`. Each sample is charged to the innermost
frame that belongs to a known kind of work (so a `json.dumps` called by
Celery counts as serialisation, a socket send by redis-py as Redis I/O).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (kind of work, pattern matched against a frame's file path); the first match wins.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("XML parsing (arXiv feed)", r"tasks/arxiv_feed\.py|defusedxml|xml/etree|xml/dom"),
    ("ranking (BM25)", r"tasks/relevance\.py"),
    ("embeddings (local hashing)", r"tasks/embeddings\.py|numpy/"),
    ("citations (APA, BibTeX)", r"tasks/citations\.py|nameparser/"),
    ("Qdrant (embedded) + sqlite", r"qdrant_client/|sqlite3/"),
    ("pydantic models", r"pydantic/|pydantic_core/"),
    ("JSON (de)serialisation", r"/json/|kombu/serialization\.py|kombu/utils/json\.py"),
    ("LLM client (openai SDK)", r"openai/"),
    ("HTTP client (httpx)", r"httpx/|httpcore/|h11/"),
    ("Redis client I/O", r"redis/"),
    ("logging", r"structlog/|logging/"),
    ("metrics (prometheus_client)", r"prometheus_client/"),
    ("Celery & kombu (tasks, events, results)", r"celery/|kombu/|billiard/|vine/"),
    ("our pipeline code (tasks/, worker/)", r"/tasks/|/worker/"),
)
_FRAME_FILE = re.compile(r"\((.*?):\d+\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this Python or on PATH, or None."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class CpuProfile:
    """Samples one process (and its children) with py-spy until stopped."""

    def __init__(self, executable: str, pid: int, output: Path, rate: int = 100) -> None:
        self.output = output
        self._process = subprocess.Popen(
            [
                executable,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--output",
                str(output),
                "--rate",
                str(rate),
                "--gil",
                "--nonblocking",
                "--subprocesses",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """End the recording; py-spy writes its file on SIGINT."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def categorise(raw_output: Path) -> list[tuple[str, float]]:
    """Share of the samples per kind of work, largest first."""
    counts: Counter[str] = Counter()
    for line in raw_output.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        counts[_category(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return [(name, count / total) for name, count in counts.most_common()]


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        match = _FRAME_FILE.search(frame)
        if match is None:
            continue
        for name, pattern in CATEGORIES:
            if re.search(pattern, match[1]):
                return name
    return "other (interpreter, threads, sockets)"
