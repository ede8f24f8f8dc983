"""TLS for a test's own Redis: throw-away certificates, and a start that skips without TLS."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from worker.local_redis import RedisServer, TlsFiles


def make_tls_files(directory: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca = ["-days", "1", "-subj", "/CN=research-arm test CA"]
    openssl("req", "-x509", *key, *ca, "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", *key, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    # Clients check the address they dialled against the certificate's alt names.
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    signed_by_ca = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
    openssl("x509", "-req", "-in", "server.csr", *signed_by_ca, "-extfile", "san.ext",
            "-out", "server.crt")  # fmt: skip
    return TlsFiles(directory / "server.crt", directory / "server.key", directory / "ca.crt")


def start_tls_server(server: RedisServer) -> None:
    """Start `server`, serving TLS; skip the test where this redis-server was built without it."""
    try:
        server.start()
    except RuntimeError as exc:
        if "tls" in str(exc).lower():
            pytest.skip(f"this redis-server has no TLS support: {exc}")
        raise
