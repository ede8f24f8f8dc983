"""Typed settings, read once from the environment at a process's entry point.

Every variable is documented in docs/configuration.md (a test checks it). A bad
value fails at start-up with the variable's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

STACK_FILE_NAME = "stack.json"
# EMBEDDING_MODEL when unset, per EMBEDDINGS mode. The hashing embedder names
# its own vector space (its recipe and dimension), whatever is set.
DEFAULT_EMBEDDING_MODELS = {
    "local": "all-MiniLM-L6-v2",
    "openai": "text-embedding-3-small",
    "hashing": "local-hashing-v1-384",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    # Broker and result backend. Unset: the local stack recorded in DATA_DIR.
    redis_url: SecretStr | None = None
    data_dir: Path = Path(".data")

    qdrant_url: str | None = None
    qdrant_path: Path | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = "research_papers"
    qdrant_timeout_seconds: float = Field(default=10.0, gt=0)

    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_min_interval_seconds: float = Field(default=3.0, ge=0)
    arxiv_timeout_seconds: float = Field(default=30.0, gt=0)
    arxiv_cache_ttl_seconds: int = Field(default=6 * 3600, ge=0)
    arxiv_max_retries: int = Field(default=4, ge=0)
    # Candidates fetched per job: max_papers times this factor, capped.
    arxiv_candidate_factor: int = Field(default=3, ge=1)
    arxiv_max_candidates: int = Field(default=50, ge=1, le=2000)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    llm_model: str | None = None
    llm_timeout_seconds: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0)
    llm_max_tokens: int = Field(default=300, ge=16)
    summary_concurrency: int = Field(default=20, ge=1)
    summary_cache_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=0)
    # The operator's ceiling on one job's LLM tokens; a request's own
    # budget.max_llm_tokens applies too, and the smaller of the two wins.
    llm_max_tokens_per_job: int | None = Field(default=None, ge=1)

    # local: the sentence-embedding model run with ONNX Runtime; openai: the
    # OpenAI-compatible endpoint; hashing: the lexical, model-free fallback
    # (opt-in). See docs/embeddings.md.
    embeddings: Literal["local", "openai", "hashing"] = "local"
    # The model's name, recorded in provenance and in the Qdrant collection.
    # Unset: all-MiniLM-L6-v2 for local, text-embedding-3-small for openai.
    embedding_model: str | None = None
    # A folder with model.onnx and tokenizer.json (EMBEDDINGS=local). Unset:
    # the files the locked packages install.
    embedding_model_path: Path | None = None
    # The sha256 model.onnx in EMBEDDING_MODEL_PATH must have. Unset: read
    # from model.onnx.sha256 beside it; a folder with neither is refused.
    embedding_model_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    # Texts are cut to this many word pieces: 128 ranks as well as 256 at half
    # the CPU (docs/embeddings.md).
    embedding_max_tokens: int = Field(default=128, ge=8, le=512)
    embedding_batch_size: int = Field(default=4, ge=1, le=1024)
    # ONNX Runtime's intra-op threads: how many cores one embedding call uses.
    embedding_threads: int = Field(default=2, ge=1, le=64)
    # Candidates with no stored or cached vector embedded while a job waits:
    # the lexical best of them, never fewer than max_papers; the others are
    # ranked on the lexical score alone (docs/embeddings.md has the figures).
    embedding_fresh_candidates: int = Field(default=8, ge=0, le=2000)
    # How long a paper's vector stays in the Redis cache (seconds).
    paper_vector_cache_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=0)

    retry_backoff_seconds: float = Field(default=1.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=60.0, gt=0)

    health_port: int = Field(default=8080, ge=1, le=65535)
    # All interfaces by default: the kubelet probes the pod's IP.
    health_host: str = "0.0.0.0"
    heartbeat_file: Path | None = None
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0)
    # /livez fails once the newest beat is older than this: a frozen worker is
    # seen within this window (plus the probe's period), a slow disk is not.
    heartbeat_ttl_seconds: float = Field(default=30.0, gt=0)
    # The sidecar's Redis PING and Qdrant request give up after this long.
    health_check_timeout_seconds: float = Field(default=1.0, gt=0)
    # prometheus_client's multiprocess files, written by every worker process
    # and read by the sidecar; wiped when the worker starts.
    metrics_dir: Path | None = None

    # Flower reads these FLOWER_* variables itself too (`celery -A worker.app
    # flower`); `research-arm up --flower` fills in what is unset.
    flower_basic_auth: SecretStr | None = None  # user:password[,user2:password2]
    flower_port: int = Field(default=5555, ge=1, le=65535)
    flower_persistent: bool = False
    flower_db: Path | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Unset: console on a terminal, JSON off one (worker.logs.chosen_log_format).
    log_format: Literal["json", "console"] | None = None

    task_soft_time_limit_seconds: int = Field(default=240, ge=1)
    task_time_limit_seconds: int = Field(default=300, ge=1)
    broker_visibility_timeout_seconds: int = Field(default=600, ge=1)
    result_expires_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # A stage's message arriving for this many times, its worker having died
    # during each earlier delivery, fails its job (DeliveryLimitExceeded).
    max_deliveries: int = Field(default=3, ge=2)

    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    worker_concurrency: int = Field(default=16, ge=1)
    # Graceful scale-in: on a cold shutdown (SIGQUIT, or SIGTERM when the
    # process runs with REMAP_SIGTERM=SIGQUIT, as the image does) running tasks
    # get this long to finish; the rest go back to the queue at once. Celery
    # waits the whole window whenever a task is running, so keep it short.
    worker_soft_shutdown_timeout_seconds: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _limits_in_order(self) -> Settings:
        if self.task_soft_time_limit_seconds >= self.task_time_limit_seconds:
            raise ValueError("TASK_SOFT_TIME_LIMIT_SECONDS must be below TASK_TIME_LIMIT_SECONDS")
        # A message whose visibility timeout ran out while its task still runs
        # is handed to a second worker: the timeout must outlast the task and
        # any retry countdown.
        longest_hold = max(self.task_time_limit_seconds, self.retry_backoff_max_seconds)
        if self.broker_visibility_timeout_seconds <= longest_hold:
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT_SECONDS must exceed TASK_TIME_LIMIT_SECONDS "
                "and RETRY_BACKOFF_MAX_SECONDS"
            )
        if self.qdrant_url and self.qdrant_path:
            raise ValueError("set QDRANT_URL or QDRANT_PATH, not both")
        return self

    @model_validator(mode="after")
    def _heartbeat_outlives_interval(self) -> Settings:
        # A TTL shorter than two beats would call a healthy worker dead
        # whenever one write is a little late.
        if self.heartbeat_ttl_seconds < 2 * self.heartbeat_interval_seconds:
            raise ValueError(
                "HEARTBEAT_TTL_SECONDS must be at least twice HEARTBEAT_INTERVAL_SECONDS"
            )
        return self

    @property
    def effective_embedding_model(self) -> str:
        """EMBEDDING_MODEL, or the default of the EMBEDDINGS mode."""
        if self.embedding_model:
            return self.embedding_model
        return DEFAULT_EMBEDDING_MODELS[self.embeddings]

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_model and (self.openai_base_url or self.openai_api_key))

    @property
    def stack_file(self) -> Path:
        return self.data_dir / STACK_FILE_NAME

    @property
    def effective_qdrant_path(self) -> Path:
        return self.qdrant_path or self.data_dir / "qdrant"

    @property
    def effective_heartbeat_file(self) -> Path:
        return self.heartbeat_file or self.data_dir / "worker.heartbeat"

    @property
    def effective_metrics_dir(self) -> Path:
        return self.metrics_dir or self.data_dir / "metrics"

    @property
    def effective_flower_db(self) -> Path:
        return self.flower_db or self.data_dir / "flower.db"

    def broker_url(self) -> str:
        """REDIS_URL, or the Redis of the local stack that `research-arm up` recorded."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        try:
            stack = json.loads(self.stack_file.read_text(encoding="utf-8"))
            return str(stack["redis_url"])
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeError(
                f"REDIS_URL is not set and no local stack is recorded in {self.stack_file}: "
                "set REDIS_URL or start one with `research-arm up`"
            ) from exc


def load_settings() -> Settings:
    """Read the settings from the environment (call once per process entry point)."""
    return Settings()
