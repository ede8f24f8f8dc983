"""The heartbeat file the worker writes and the sidecar reads.

One small JSON object, replaced atomically (written to a temporary file in the
same directory, then renamed over the old one), so a reader never sees half a
beat. It lives on a volume both containers mount (an emptyDir in Kubernetes).
This module is shared by both sides and imports nothing beyond the standard
library: the sidecar must stay free of Celery.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heartbeat:
    """One beat of a worker process.

    Attributes:
        pid: the worker's main process id.
        hostname: the Celery node name, e.g. ``research@pod-7f9c``.
        time: when the beat was written (Unix seconds, the worker's clock).
        interval: seconds between beats, so a reader can tell how late one is.
        consuming: the worker's task consumer is running (it takes jobs).
        broker_ok: the worker's broker connection is up.
    """

    pid: int
    hostname: str
    time: float
    interval: float
    consuming: bool
    broker_ok: bool

    def age(self, now: float) -> float:
        """Seconds since the beat was written (never negative)."""
        return max(0.0, now - self.time)


def write_heartbeat(path: Path, beat: Heartbeat) -> None:
    """Replace the heartbeat file at `path` with `beat`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # Readable by the sidecar even when its container runs as another user.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(beat), handle)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_heartbeat(path: Path) -> Heartbeat | None:
    """The beat in the file at `path`, or None if there is none or it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Heartbeat(
            pid=int(data["pid"]),
            hostname=str(data["hostname"]),
            time=float(data["time"]),
            interval=float(data["interval"]),
            consuming=bool(data["consuming"]),
            broker_ok=bool(data["broker_ok"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
