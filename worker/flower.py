"""How the local stack runs Flower: against the stack's broker, with basic auth on by default.

Flower reads its options from FLOWER_* variables itself, so the same names
work for `celery -A worker.app flower` in a container: FLOWER_BASIC_AUTH
(user:password), FLOWER_PORT, FLOWER_PERSISTENT, FLOWER_DB. `research-arm up
--flower` passes them on and fills one gap: with FLOWER_BASIC_AUTH unset it
makes a password once, keeps it in DATA_DIR/flower-credentials (readable by
this user only) and reuses it on the next start.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from worker.settings import Settings

CREDENTIALS_FILE_NAME = "flower-credentials"
DEFAULT_USER = "research"


@dataclass(frozen=True)
class FlowerLaunch:
    """Flower's command line and the variables to add to its environment."""

    argv: list[str]
    env: dict[str, str]
    url: str
    credentials_file: Path | None  # where generated credentials are kept; None if from settings


def flower_credentials(settings: Settings) -> tuple[str, Path | None]:
    """FLOWER_BASIC_AUTH, or this data directory's generated `user:password`.

    Returns the credentials and the file they are kept in (None if from settings).
    """
    if settings.flower_basic_auth is not None:
        return settings.flower_basic_auth.get_secret_value(), None
    path = (settings.data_dir / CREDENTIALS_FILE_NAME).resolve()
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = ""
    if ":" in stored:
        return stored, path
    credentials = f"{DEFAULT_USER}:{secrets.token_urlsafe(18)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(credentials + "\n")
    return credentials, path


def flower_launch(
    settings: Settings, port: int | None = None, address: str = "127.0.0.1"
) -> FlowerLaunch:
    """Flower against the app's broker on `address:port` (default FLOWER_PORT).

    The password travels in the environment, not on the command line where
    `ps` would show it.
    """
    port = port or settings.flower_port
    credentials, credentials_file = flower_credentials(settings)
    env = {"FLOWER_BASIC_AUTH": credentials}
    if settings.flower_persistent:
        db = settings.effective_flower_db.resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        env |= {"FLOWER_PERSISTENT": "true", "FLOWER_DB": str(db)}
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "flower",
        f"--port={port}",
        f"--address={address}",
    ]
    return FlowerLaunch(argv, env, f"http://{address}:{port}", credentials_file)
