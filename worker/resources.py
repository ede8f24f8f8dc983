"""The clients a worker process builds once, after any fork, and closes on shutdown.

`build_resources` turns the typed settings into the `StageResources` that
`tasks` declares; `provide_resources` hands `tasks.resources` the recipe at
worker start (see `worker.app`), and each process builds its own on first
use, so a forked child never uses its parent's sockets.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import fields
from importlib.metadata import version
from typing import Any

import httpx
import openai
import redis
from qdrant_client import QdrantClient

from tasks.arxiv_client import ArxivClient
from tasks.cache import RedisJsonCache
from tasks.constants import ARXIV_CACHE_PREFIX, SUMMARY_CACHE_PREFIX
from tasks.embeddings import Embedder, HashingEmbedder, OpenAIEmbedder
from tasks.onnx_embedder import (
    PACKAGED_MODEL_NAME,
    EmbeddingModelError,
    ModelFiles,
    OnnxEmbedder,
    OnnxOptions,
    model_files_in,
    packaged_model_files,
    verify_model_files,
)
from tasks.paper_index import PaperIndex, PendingWrites, ServerLayout
from tasks.paper_vectors import MemoizingEmbedder, PaperVectorCache, PaperVectorLookup
from tasks.rate_gate import ArxivRateGate
from tasks.resources import StageResources, StageSettings, process_resources
from tasks.summarizer import LLMSummarizer
from worker.metrics import worker_metrics
from worker.settings import Settings


def open_qdrant(settings: Settings) -> QdrantClient:
    """A Qdrant server client (QDRANT_URL) or the embedded store under QDRANT_PATH."""
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        # The version check runs on a background thread and only warns; the
        # sidecar's readiness check is where an unreachable Qdrant shows.
        return QdrantClient(
            url=settings.qdrant_url,
            api_key=api_key,
            timeout=int(settings.qdrant_timeout_seconds),
            check_compatibility=False,
        )
    path = settings.effective_qdrant_path
    path.mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(path))


def openai_client_for(settings: Settings) -> openai.OpenAI:
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    # One connection per concurrent summary, kept alive between jobs.
    pool = settings.summary_concurrency * max(1, settings.worker_concurrency)
    return openai.OpenAI(
        api_key=api_key,
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout_seconds,
        max_retries=0,
        http_client=httpx.Client(
            timeout=settings.llm_timeout_seconds,
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        ),
    )


def embedding_model_files(settings: Settings) -> ModelFiles:
    """The local model's files: EMBEDDING_MODEL_PATH's folder, or the packaged all-MiniLM-L6-v2.

    Raises EmbeddingModelError naming the setting when they cannot be.
    """
    if settings.embedding_model_path is not None:
        return model_files_in(settings.embedding_model_path, settings.embedding_model_sha256)
    model = settings.effective_embedding_model
    if model != PACKAGED_MODEL_NAME:
        # The packaged files are all-MiniLM-L6-v2: another name would label its
        # vectors as a model they are not from.
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={model}: the packaged model is {PACKAGED_MODEL_NAME}; set "
            "EMBEDDING_MODEL_PATH to a folder with this model's files, or unset EMBEDDING_MODEL"
        )
    if settings.embedding_model_sha256 is not None:
        raise EmbeddingModelError(
            "EMBEDDING_MODEL_SHA256 applies to EMBEDDING_MODEL_PATH, which is unset; the "
            "packaged model's digest is pinned in the code"
        )
    return packaged_model_files()


def check_embedding_model(settings: Settings) -> None:
    """Fail fast, before a worker starts consuming, if the local model's files are wrong.

    Checks the files and their digest without loading the model, so a
    prefork parent does not hold a session its children would not use.
    Raises EmbeddingModelError; other modes have nothing to check.
    """
    if settings.embeddings == "local":
        verify_model_files(embedding_model_files(settings))


def build_embedder(settings: Settings, openai_client: openai.OpenAI | None) -> Embedder:
    """The embedder EMBEDDINGS names; the local model's session is loaded here, once."""
    if settings.embeddings == "hashing":
        return HashingEmbedder()
    if settings.embeddings == "openai":
        if openai_client is None:
            raise ValueError("EMBEDDINGS=openai needs the OpenAI client")
        return OpenAIEmbedder(openai_client, settings.effective_embedding_model)
    options = OnnxOptions(
        max_tokens=settings.embedding_max_tokens,
        batch_size=settings.embedding_batch_size,
        threads=settings.embedding_threads,
    )
    return OnnxEmbedder.load(
        embedding_model_files(settings), settings.effective_embedding_model, options
    )


def build_paper_index(
    settings: Settings,
    embedder: Embedder,
    *,
    summary_model: str | None,
    vector_cache: PaperVectorCache | None = None,
) -> PaperIndex:
    """The index of papers in the Qdrant the settings name (opened on first use)."""
    return PaperIndex(
        lambda: open_qdrant(settings),
        settings.qdrant_collection,
        embedder,
        summary_model=summary_model,
        # A server holds the fleet's corpus of millions of papers: quantized vectors in RAM.
        server_layout=ServerLayout() if settings.qdrant_url else None,
        vector_cache=vector_cache,
    )


def stage_settings(settings: Settings) -> StageSettings:
    """The part of the settings the stages read (each field has the setting's name)."""
    derived: dict[str, Any] = {
        "qdrant_store_path": None if settings.qdrant_url else settings.effective_qdrant_path
    }
    named = {
        field.name: getattr(settings, field.name)
        for field in fields(StageSettings)
        if field.name not in derived
    }
    return StageSettings(**named, **derived)


def build_resources(settings: Settings) -> StageResources:
    """Build every client of a worker process from the settings.

    Raises EmbeddingModelError, naming the setting to fix, when the local
    embedding model is missing or damaged: no client is opened then.
    """
    needs_openai = settings.llm_configured or settings.embeddings == "openai"
    openai_client = openai_client_for(settings) if needs_openai else None
    try:
        model = build_embedder(settings, openai_client)
    except BaseException:
        if openai_client is not None:
            openai_client.close()
        raise
    # A model run in the process is worth remembering: the stages of a job
    # embed the same query and papers again (hashing is cheaper than the memo).
    lexical = isinstance(model, HashingEmbedder)
    embedder: Embedder = model if lexical else MemoizingEmbedder(model)
    redis_client = redis.Redis.from_url(
        settings.broker_url(),
        socket_timeout=30,
        socket_connect_timeout=10,
        health_check_interval=10,
        max_connections=max(16, settings.worker_concurrency * 4),
    )
    http = httpx.Client(
        timeout=settings.arxiv_timeout_seconds,
        headers={"User-Agent": f"research-arm/{version('research-arm')}"},
        follow_redirects=True,
    )
    arxiv = ArxivClient(
        http,
        settings.arxiv_api_url,
        ArxivRateGate(redis_client, settings.arxiv_min_interval_seconds),
        RedisJsonCache(redis_client, ARXIV_CACHE_PREFIX, settings.arxiv_cache_ttl_seconds),
        settings.arxiv_timeout_seconds,
    )
    summarizer = (
        LLMSummarizer(openai_client, settings.llm_model, settings.llm_max_tokens)
        if openai_client is not None and settings.llm_configured and settings.llm_model
        else None
    )
    # Hashing costs less than a cache round trip: its vectors are never cached.
    cache = (
        None
        if lexical
        else PaperVectorCache(redis_client, embedder.name, settings.paper_vector_cache_ttl_seconds)
    )
    index = build_paper_index(
        settings,
        embedder,
        summary_model=summarizer.model if summarizer else None,
        vector_cache=cache,
    )

    def close() -> None:
        index.close()
        if openai_client is not None:
            openai_client.close()
        http.close()
        redis_client.close()

    return StageResources(
        settings=stage_settings(settings),
        redis=redis_client,
        arxiv=arxiv,
        summarizer=summarizer,
        summary_cache=RedisJsonCache(
            redis_client, SUMMARY_CACHE_PREFIX, settings.summary_cache_ttl_seconds
        ),
        embedder=embedder,
        # Vectors the index holds are never computed again.
        paper_vectors=PaperVectorLookup(embedder, cache, store=index),
        # Hashing is cheap enough to embed every candidate.
        fresh_embeddings=settings.arxiv_max_candidates
        if lexical
        else settings.embedding_fresh_candidates,
        index=index,
        pending_writes=PendingWrites(redis_client),
        metrics=worker_metrics(),
        close=close,
    )


def provide_resources(load_settings: Callable[[], Settings]) -> None:
    """Tell `tasks` how this worker builds a process's resources (from settings read then)."""
    process_resources.provide(lambda: build_resources(load_settings()))


def open_resources() -> StageResources:
    """Build this process's resources now, if it has none yet."""
    limit_malloc_arenas(MALLOC_ARENAS)
    return process_resources.open()


def close_resources() -> None:
    process_resources.close()


# glibc malloc arenas a worker process keeps (see limit_malloc_arenas).
MALLOC_ARENAS = 2
# mallopt's parameter number for the arena cap, from glibc's malloc.h.
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int) -> None:
    """Cap glibc's malloc arenas in this process, as MALLOC_ARENA_MAX does at start-up.

    glibc gives threads that allocate at the same time arenas of their own, up
    to eight per core, and memory freed in one arena is not reused by another:
    a thread-pool worker's RSS grows with its threads (every LLM call of a
    summary has one). Python threads take turns under the GIL, so a few arenas
    cost no speed (docs/performance.md has the measured saving). Call it
    before the pool starts its threads; a C library without mallopt (musl)
    is left as it is.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, arenas)
