"""Names shared by the worker, its clients and the sidecar: task names, queue, Redis keys."""

from typing import Final

QUEUE: Final = "research"

TASK_EXECUTE: Final = "research.execute"
TASK_RECALL: Final = "research.recall"
TASK_SEARCH: Final = "research.search"
TASK_RANK: Final = "research.rank"
TASK_SUMMARIZE: Final = "research.summarize"
TASK_STORE: Final = "research.store"
# Snapshot ingest spread over the workers (`research-arm corpus ingest --via-queue`).
TASK_INGEST_CHUNK: Final = "research.ingest_chunk"
TASK_INGEST_COMMIT: Final = "research.ingest_commit"

# Redis keys of our own. Celery's and kombu's keys (the queue list `research`,
# `unacked`, `celery-task-meta-*`) are theirs and keep their names.
ARXIV_GATE_KEY: Final = "research-arm:arxiv:next-slot"
ARXIV_CACHE_PREFIX: Final = "research-arm:arxiv:response:"
SUMMARY_CACHE_PREFIX: Final = "research-arm:summary:"
PENDING_STORE_KEY: Final = "research-arm:memory:pending"
# + "<task id>:<retries>": deliveries of a stage's message not yet finished.
DELIVERIES_PREFIX: Final = "research-arm:deliveries:"
# + "<job id>:<stage>": what earlier attempts of a retried stage spent.
ATTEMPT_USAGE_PREFIX: Final = "research-arm:usage:"
PAPER_VECTOR_PREFIX: Final = "research-arm:paper-vector:"

# Bump when the summarisation prompt changes: cached summaries keyed by the
# old prompt are then no longer reused.
SUMMARY_PROMPT_VERSION: Final = "v1"
