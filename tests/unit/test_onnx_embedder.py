"""The local sentence-embedding model, run from the files the lock installs (no network)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tasks.onnx_embedder import (
    DIGEST_FILE,
    MODEL_FILE,
    PACKAGED_MODEL_SHA256,
    TOKENIZER_FILE,
    EmbeddingModelError,
    OnnxEmbedder,
    OnnxOptions,
    export_packaged_model,
    packaged_model_files,
)
from tests.deploy.settings_names import settings_from_environment
from worker import cli
from worker.resources import build_resources

QUERY = "translating questions into database queries"
TEXT_TO_SQL = (
    "Text-to-SQL parsing\nWe present a parser that maps natural language questions to SQL "
    "over relational tables, generalising to unseen database schemas."
)
PHYSICS = (
    "Thermal transport in graphene\nWe measure the thermal conductivity of suspended graphene "
    "at low temperature with Raman spectroscopy and compare it with phonon models."
)


@pytest.fixture(scope="module")
def model() -> OnnxEmbedder:
    return OnnxEmbedder.load(packaged_model_files(), "all-MiniLM-L6-v2", OnnxOptions(threads=1))


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


def test_the_packaged_model_is_the_pinned_file() -> None:
    files = packaged_model_files()

    assert files.sha256 == PACKAGED_MODEL_SHA256
    assert hashlib.sha256(files.model.read_bytes()).hexdigest() == PACKAGED_MODEL_SHA256
    assert files.tokenizer.name == TOKENIZER_FILE


def test_a_paraphrase_is_closer_than_an_unrelated_abstract(model: OnnxEmbedder) -> None:
    query, sql, physics = model.embed([QUERY, TEXT_TO_SQL, PHYSICS])

    # They share no content word: only a model of meaning brings them together.
    assert cosine(query, sql) > cosine(query, physics) + 0.3
    assert len(query) == 384
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)


def test_batched_vectors_equal_one_by_one_vectors(model: OnnxEmbedder) -> None:
    texts = [QUERY, TEXT_TO_SQL, PHYSICS, "graph neural networks"]

    together = model.embed(texts)
    alone = [model.embed([text])[0] for text in texts]

    # Padding a short text to a batch's longest one must not move its vector.
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_texts_are_cut_at_the_token_limit_and_the_tokens_counted() -> None:
    short = OnnxEmbedder.load(packaged_model_files(), "m", OnnxOptions(max_tokens=16, threads=1))
    same_start = "graph neural networks predict molecular properties from atoms and bonds " * 3

    batch = short.embed_with_usage([same_start + "in chemistry", same_start + "of proteins"])

    assert batch.tokens == 2 * 16
    np.testing.assert_allclose(batch.vectors[0], batch.vectors[1], atol=1e-6)


def test_blank_texts_get_the_zero_vector_and_cost_nothing(model: OnnxEmbedder) -> None:
    batch = model.embed_with_usage(["", "  ", "graph neural networks"])

    assert batch.vectors[0] == [0.0] * 384
    assert batch.vectors[1] == [0.0] * 384
    assert batch.tokens == model.embed_with_usage(["graph neural networks"]).tokens > 0
    assert model.embed_with_usage([]).vectors == []


# --- Start-up: the model's files are checked, and a bad one stops the worker ----------------


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """The packaged files exported to a folder, as the image build does."""
    return export_packaged_model(tmp_path / "minilm").model.parent


def test_the_exported_folder_holds_the_files_and_the_pinned_digest(model_folder: Path) -> None:
    assert sorted(p.name for p in model_folder.iterdir()) == sorted(
        [MODEL_FILE, TOKENIZER_FILE, DIGEST_FILE]
    )
    assert (model_folder / DIGEST_FILE).read_text().split()[0] == PACKAGED_MODEL_SHA256


def start_up_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> str:
    """Build a worker's resources from these settings; the EmbeddingModelError's message."""
    settings = settings_from_environment(
        monkeypatch, {"REDIS_URL": "redis://127.0.0.1:1/0", "DATA_DIR": str(tmp_path), **env}
    )
    with pytest.raises(EmbeddingModelError) as raised:
        build_resources(settings)
    return str(raised.value)


def test_a_model_folder_with_its_digest_file_loads(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_from_environment(
        monkeypatch,
        {
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "DATA_DIR": str(tmp_path),
            "EMBEDDING_MODEL_PATH": str(model_folder),
            "EMBEDDING_THREADS": "1",
        },
    )
    resources = build_resources(settings)
    try:
        assert resources.embedder.name == "all-MiniLM-L6-v2"
        (vector,) = resources.embedder.embed([QUERY])
        assert len(vector) == 384
    finally:
        resources.close()


def test_a_missing_folder_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = start_up_error(monkeypatch, tmp_path, EMBEDDING_MODEL_PATH=str(tmp_path / "nowhere"))

    assert f"EMBEDDING_MODEL_PATH={tmp_path / 'nowhere'}" in message
    assert "no such folder" in message


def test_a_damaged_model_file_stops_start_up_naming_the_variable(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with (model_folder / MODEL_FILE).open("r+b") as model_file:
        model_file.seek(1000)
        model_file.write(b"\x00" * 64)

    message = start_up_error(monkeypatch, tmp_path, EMBEDDING_MODEL_PATH=str(model_folder))

    assert f"EMBEDDING_MODEL_PATH={model_folder}" in message
    assert "expected" in message and PACKAGED_MODEL_SHA256 in message


def test_a_digest_setting_that_does_not_match_stops_start_up(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = start_up_error(
        monkeypatch,
        tmp_path,
        EMBEDDING_MODEL_PATH=str(model_folder),
        EMBEDDING_MODEL_SHA256="0" * 64,
    )

    assert "EMBEDDING_MODEL_PATH" in message and "0" * 64 in message


def test_a_folder_without_any_digest_is_refused(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (model_folder / DIGEST_FILE).unlink()

    message = start_up_error(monkeypatch, tmp_path, EMBEDDING_MODEL_PATH=str(model_folder))

    assert "EMBEDDING_MODEL_SHA256" in message and DIGEST_FILE in message


def test_a_missing_tokenizer_is_named(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (model_folder / TOKENIZER_FILE).unlink()

    message = start_up_error(monkeypatch, tmp_path, EMBEDDING_MODEL_PATH=str(model_folder))

    assert "EMBEDDING_MODEL_PATH" in message and TOKENIZER_FILE in message


def test_another_model_name_without_its_files_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = start_up_error(monkeypatch, tmp_path, EMBEDDING_MODEL="bge-small-en-v1.5")

    assert "EMBEDDING_MODEL=bge-small-en-v1.5" in message
    assert "EMBEDDING_MODEL_PATH" in message


def test_the_worker_command_exits_non_zero_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_from_environment(
        monkeypatch,
        {
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "DATA_DIR": str(tmp_path),
            "EMBEDDING_MODEL_PATH": str(tmp_path / "nowhere"),
        },
    )

    exit_code = cli.main(["worker"])

    assert exit_code == 2
    assert f"EMBEDDING_MODEL_PATH={tmp_path / 'nowhere'}" in capsys.readouterr().err


def test_hashing_stays_an_explicit_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = settings_from_environment(monkeypatch, {"REDIS_URL": "redis://127.0.0.1:1/0"})
    hashing = settings_from_environment(
        monkeypatch, {"REDIS_URL": "redis://127.0.0.1:1/0", "EMBEDDINGS": "hashing"}
    )

    assert default.embeddings == "local"
    assert default.effective_embedding_model == "all-MiniLM-L6-v2"
    resources = build_resources(hashing.model_copy(update={"data_dir": tmp_path}))
    try:
        assert resources.embedder.name == "local-hashing-v1-384"
        # Hashing is cheap: every candidate is embedded, as before the model came.
        assert resources.fresh_embeddings == hashing.arxiv_max_candidates
    finally:
        resources.close()


def test_the_openai_mode_keeps_its_own_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_environment(monkeypatch, {"EMBEDDINGS": "openai"})

    assert settings.effective_embedding_model == "text-embedding-3-small"
