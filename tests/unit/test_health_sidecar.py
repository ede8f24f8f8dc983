"""The sidecar's endpoints over a fake Redis and a heartbeat file; its server; `check`; Flower."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from pydantic import ValidationError

from schemas.health import CapabilityManifest, HealthStatus
from tasks.rate_gate import ArxivRateGate
from worker.flower import flower_launch
from worker.heartbeat_file import Heartbeat, write_heartbeat
from worker.settings import Settings, load_settings
from worker.sidecar import Sidecar, SidecarServer

REPO_ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in ("REDIS_URL", "QDRANT_URL", "FLOWER_BASIC_AUTH", "FLOWER_PERSISTENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEARTBEAT_TTL_SECONDS", "10")
    monkeypatch.setenv("ARXIV_MIN_INTERVAL_SECONDS", "3")
    monkeypatch.setenv("LLM_MODEL", "fake-model")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    return load_settings()


def beat_at(settings: Settings, when: float, *, consuming: bool = True) -> None:
    write_heartbeat(
        settings.effective_heartbeat_file,
        Heartbeat(
            pid=4242,
            hostname="research@pod-1",
            time=when,
            interval=5,
            consuming=consuming,
            broker_ok=consuming,
        ),
    )


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def sidecar(settings: Settings, redis_client: fakeredis.FakeRedis) -> Sidecar:
    return Sidecar(settings, redis_client, clock=lambda: NOW)


def body(reply_body: bytes) -> dict[str, object]:
    data = json.loads(reply_body)
    assert isinstance(data, dict)
    return data


def test_a_fresh_consuming_worker_is_alive_ready_and_healthy(
    settings: Settings, sidecar: Sidecar
) -> None:
    beat_at(settings, NOW - 2)

    assert sidecar.livez().status == 200
    assert sidecar.readyz().status == 200
    health = HealthStatus.model_validate_json(sidecar.health().body)
    assert health.status == "healthy" and health.arm_id == "research"
    assert set(health.dependencies) == {"worker", "redis", "qdrant", "corpus", "llm", "arxiv_gate"}


def test_a_stale_heartbeat_is_dead_unready_and_unhealthy(
    settings: Settings, sidecar: Sidecar
) -> None:
    beat_at(settings, NOW - 11)

    livez = sidecar.livez()
    assert livez.status == 503 and body(livez.body)["status"] == "dead"
    assert sidecar.readyz().status == 503
    health = sidecar.health()
    assert health.status == 503
    assert HealthStatus.model_validate_json(health.body).status == "unhealthy"


def test_a_worker_that_stopped_consuming_is_alive_but_not_ready(
    settings: Settings, sidecar: Sidecar
) -> None:
    beat_at(settings, NOW, consuming=False)

    assert sidecar.livez().status == 200
    readyz = body(sidecar.readyz().body)
    assert readyz["status"] == "not_ready" and "not consuming" in str(readyz["detail"])


def test_liveness_never_touches_redis(settings: Settings) -> None:
    beat_at(settings, NOW)
    server = fakeredis.FakeServer()
    server.connected = False  # every command now raises ConnectionError
    sidecar = Sidecar(settings, fakeredis.FakeRedis(server=server), clock=lambda: NOW)

    assert sidecar.livez().status == 200
    assert sidecar.readyz().status == 503
    health = HealthStatus.model_validate_json(sidecar.health().body)
    assert health.dependencies["redis"].status == "down"
    assert health.dependencies["arxiv_gate"].detail == "unknown: redis is down"


def test_health_says_when_the_arxiv_gate_cools_down(
    settings: Settings, sidecar: Sidecar, redis_client: fakeredis.FakeRedis
) -> None:
    beat_at(settings, NOW)
    ArxivRateGate(redis_client, 3).reserve()

    health = HealthStatus.model_validate_json(sidecar.health().body)

    assert health.dependencies["arxiv_gate"].detail.startswith("cooling down")
    metrics = sidecar.metrics().body.decode()
    assert "research_arm_arxiv_gate_cooldown_seconds 2." in metrics


def test_capabilities_carry_both_json_schemas(sidecar: Sidecar) -> None:
    manifest = CapabilityManifest.model_validate_json(sidecar.capabilities().body)

    assert manifest.task_name == "research.execute" and manifest.queue == "research"
    assert "query" in manifest.input_schema["properties"]
    assert "papers" in manifest.output_schema["properties"]


def test_metrics_show_the_queue_and_the_worker(
    settings: Settings, sidecar: Sidecar, redis_client: fakeredis.FakeRedis
) -> None:
    beat_at(settings, NOW - 1)
    redis_client.lpush("research", "waiting-1", "waiting-2")
    redis_client.hset("unacked", "tag", json.dumps(["{}", "research", "research"]))

    reply = sidecar.metrics()

    assert reply.content_type.startswith("text/plain")
    text = reply.body.decode()
    assert 'celery_queue_length{queue_name="research"} 2.0' in text
    assert 'research_arm_queue_depth{queue_name="research"} 3.0' in text
    assert 'celery_worker_up{hostname="pod-1"} 1.0' in text
    assert "research_arm_worker_heartbeat_age_seconds 1.0" in text


# --- over HTTP ------------------------------------------------------------------------


@pytest.fixture
def served(sidecar: Sidecar) -> Iterator[str]:
    server = SidecarServer(("127.0.0.1", 0), sidecar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_server_routes_each_path_and_refuses_others(settings: Settings, served: str) -> None:
    beat_at(settings, NOW)

    status, livez = get(f"{served}/livez")
    assert status == 200 and json.loads(livez)["worker"]["hostname"] == "research@pod-1"
    request = urllib.request.Request(f"{served}/readyz", method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as head:
        assert head.status == 200 and head.read() == b""
    status, capabilities = get(f"{served}/capabilities")
    assert status == 200 and b'"task_name": "research.execute"' in capabilities
    status, missing = get(f"{served}/nope")
    assert status == 404 and b"/livez" in missing


# --- the process ----------------------------------------------------------------------


def test_the_sidecar_and_check_commands_never_import_celery() -> None:
    probe = (
        "import sys, worker.cli, worker.sidecar; "
        "heavy = ('celery', 'kombu', 'qdrant_client', 'openai', 'httpx', 'numpy', "
        "'onnxruntime', 'tokenizers'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == "[]"


def test_check_exits_0_on_a_fresh_heartbeat_and_1_otherwise(tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HEARTBEAT_FILE": str(heartbeat),
        "HEARTBEAT_TTL_SECONDS": "10",
        "DATA_DIR": str(tmp_path),
    }

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "worker.cli", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    missing = check("check")
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr
    write_heartbeat(heartbeat, Heartbeat(7, "research@pod", time.time(), 5, True, True))
    fresh = check("sidecar", "--check")
    assert fresh.returncode == 0 and fresh.stdout.startswith("alive")
    write_heartbeat(heartbeat, Heartbeat(7, "research@pod", time.time() - 60, 5, True, True))
    assert check("check").returncode == 1


def test_the_heartbeat_ttl_must_cover_two_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTBEAT_INTERVAL_SECONDS", "10")
    monkeypatch.setenv("HEARTBEAT_TTL_SECONDS", "15")

    with pytest.raises(ValidationError, match="HEARTBEAT_TTL_SECONDS"):
        load_settings()


# --- Flower ---------------------------------------------------------------------------


def test_flower_gets_generated_credentials_kept_private_and_reused(settings: Settings) -> None:
    first = flower_launch(settings)
    again = flower_launch(settings)

    credentials = first.env["FLOWER_BASIC_AUTH"]
    user, _, password = credentials.partition(":")
    assert user == "research" and len(password) >= 20
    assert again.env["FLOWER_BASIC_AUTH"] == credentials
    assert first.credentials_file is not None
    assert stat.S_IMODE(first.credentials_file.stat().st_mode) == 0o600
    assert not any(password in arg for arg in first.argv)
    assert "--port=5555" in first.argv and "FLOWER_PERSISTENT" not in first.env


def test_flower_takes_credentials_and_persistence_from_settings(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:correct-horse")
    monkeypatch.setenv("FLOWER_PERSISTENT", "true")

    launch = flower_launch(load_settings(), port=15555)

    assert launch.env["FLOWER_BASIC_AUTH"] == "ops:correct-horse"
    assert launch.credentials_file is None
    assert launch.env["FLOWER_PERSISTENT"] == "true"
    assert launch.env["FLOWER_DB"].endswith("flower.db")
    assert launch.url.endswith(":15555")


def test_the_corpus_is_reported_from_its_status_file_and_never_gates_readiness(
    settings: Settings, sidecar: Sidecar
) -> None:
    from datetime import UTC, date, datetime

    from tasks.corpus_coverage import CoverageEntry
    from tasks.corpus_status import CorpusStatus, write_corpus_status

    beat_at(settings, NOW - 2)
    without = body(sidecar.readyz().body)
    write_corpus_status(
        settings.data_dir,
        CorpusStatus(
            collection="research_papers",
            embedding_model="local-hashing-v1-384",
            records=200,
            watermark=date(2007, 4, 2),
            coverage=[CoverageEntry(watermark=date(2007, 4, 2))],
            bytes_on_disk=1000,
            updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )
    ready = sidecar.readyz()
    health = HealthStatus.model_validate_json(sidecar.health().body)

    assert without["status"] == "ready"
    assert without["checks"]["corpus"]["detail"] == "no corpus ingested: jobs search arXiv"  # type: ignore[index]
    assert ready.status == 200
    assert health.dependencies["corpus"].status == "ok"
    assert "200 papers" in health.dependencies["corpus"].detail
    assert "watermark 2007-04-02" in health.dependencies["corpus"].detail
