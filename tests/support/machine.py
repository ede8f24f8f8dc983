"""What a measurement ran on: the checkout's commit and the CPU, for report headers."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.worker_process import REPO_ROOT


@dataclass(frozen=True)
class Revision:
    """The commit checked out, and whether tracked files differ from it."""

    commit: str
    """Abbreviated to 12 hex digits."""
    changed: bool


def checkout_revision() -> Revision | None:
    """The repository's revision; None where git or the repository is not there."""
    try:
        commit, status = (
            subprocess.run(
                ["git", *arguments],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            for arguments in (
                ["rev-parse", "--short=12", "HEAD"],
                ["status", "--porcelain", "--untracked-files=no"],
            )
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Revision(commit, changed=bool(status))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
