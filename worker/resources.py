"""Clients a worker process builds once, after any fork, and closes on shutdown.

Tasks reach them through `current_resources()`. They are opened by the
worker's start-up signals (see `worker.app`) and, failing that, on first use;
a forked child never uses its parent's sockets because the holder remembers
the process that built them.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from importlib.metadata import version

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
from tasks.summarizer import LLMSummarizer
from worker.settings import Settings


@dataclass
class WorkerResources:
    settings: Settings
    redis: redis.Redis
    http: httpx.Client
    arxiv: ArxivClient
    gate: ArxivRateGate
    openai: openai.OpenAI | None
    summarizer: LLMSummarizer | None
    summary_cache: RedisJsonCache
    embedder: Embedder
    paper_vectors: PaperVectorLookup
    # Candidates without a vector the rank stage may embed (EMBEDDING_FRESH_CANDIDATES).
    fresh_embeddings: int
    # The index of papers (corpus and job-stored); the recall and store stages use it.
    memory: PaperIndex
    pending_writes: PendingWrites

    def close(self) -> None:
        self.memory.close()
        if self.openai is not None:
            self.openai.close()
        self.http.close()
        self.redis.close()


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
    settings: Settings, embedder: Embedder, *, summary_model: str | None
) -> PaperIndex:
    """The index of papers in the Qdrant the settings name (opened on first use)."""
    return PaperIndex(
        lambda: open_qdrant(settings),
        settings.qdrant_collection,
        embedder,
        summary_model=summary_model,
        # A server holds the fleet's corpus of millions of papers: quantized vectors in RAM.
        server_layout=ServerLayout() if settings.qdrant_url else None,
    )


def build_resources(settings: Settings) -> WorkerResources:
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
    gate = ArxivRateGate(redis_client, settings.arxiv_min_interval_seconds)
    arxiv = ArxivClient(
        http,
        settings.arxiv_api_url,
        gate,
        RedisJsonCache(redis_client, ARXIV_CACHE_PREFIX, settings.arxiv_cache_ttl_seconds),
        settings.arxiv_timeout_seconds,
    )
    summarizer = (
        LLMSummarizer(openai_client, settings.llm_model, settings.llm_max_tokens)
        if openai_client is not None and settings.llm_configured and settings.llm_model
        else None
    )
    cache = PaperVectorCache(redis_client, embedder.name, settings.paper_vector_cache_ttl_seconds)
    memory = build_paper_index(
        settings, embedder, summary_model=summarizer.model if summarizer else None
    )
    return WorkerResources(
        settings=settings,
        redis=redis_client,
        http=http,
        arxiv=arxiv,
        gate=gate,
        openai=openai_client,
        summarizer=summarizer,
        summary_cache=RedisJsonCache(
            redis_client, SUMMARY_CACHE_PREFIX, settings.summary_cache_ttl_seconds
        ),
        embedder=embedder,
        paper_vectors=PaperVectorLookup(
            embedder,
            # Hashing costs less than a cache round trip: it is neither cached
            # nor limited, as before the model came.
            None if lexical else cache,
            # Vectors the index holds are never computed again.
            store=memory,
        ),
        fresh_embeddings=settings.arxiv_max_candidates
        if lexical
        else settings.embedding_fresh_candidates,
        memory=memory,
        pending_writes=PendingWrites(redis_client),
    )


class _ProcessResources:
    """Holds one process's resources; rebuilt if used from a forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: WorkerResources | None = None
        self._owner_pid = 0

    def open(self, settings: Settings) -> WorkerResources:
        with self._lock:
            if self._resources is None or self._owner_pid != os.getpid():
                self._resources = build_resources(settings)
                self._owner_pid = os.getpid()
            return self._resources

    def current(self) -> WorkerResources | None:
        with self._lock:
            if self._owner_pid != os.getpid():
                return None
            return self._resources

    def close(self) -> None:
        with self._lock:
            if self._resources is not None and self._owner_pid == os.getpid():
                self._resources.close()
            self._resources = None


_holder = _ProcessResources()


def open_resources(settings: Settings) -> WorkerResources:
    """Build this process's resources if it has none yet."""
    limit_malloc_arenas(MALLOC_ARENAS)
    return _holder.open(settings)


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
    cost no speed. Measured by the benchmark: a worker's peak RSS after 200
    jobs 257 MiB -> 223 MiB. Call it before the pool starts its threads; a
    C library without mallopt (musl) is left as it is.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, arenas)


def current_resources() -> WorkerResources:
    """This process's resources, built from the environment on first use."""
    resources = _holder.current()
    if resources is None:
        from worker.settings import load_settings

        resources = _holder.open(load_settings())
    return resources


def close_resources() -> None:
    _holder.close()
