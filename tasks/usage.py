"""What a job spends (LLM and embedding tokens, arXiv requests), and how a retry keeps count.

The ledger is `JobState.usage` (the public `Usage` model of `provenance.usage`):
each stage adds to it as it spends, from the APIs' own usage fields. It travels
down the chain with the job. A Celery retry, though, re-sends the stage's
original message, so what a failed attempt spent would vanish with it:
`AttemptUsage` keeps each failed attempt's spending in Redis, and the next
attempt of the same stage adds it back before it starts. Every attempt is
thus counted once: its own spending travels in the job state only through the
attempt that succeeds, and a failed attempt's only through Redis.
"""

from __future__ import annotations

from typing import Final

import redis

from schemas.research import ArxivUsage, EmbeddingUsage, LlmUsage, Usage
from tasks.constants import ATTEMPT_USAGE_PREFIX

# Retries come within minutes (RETRY_BACKOFF_MAX_SECONDS); a day is ample.
ATTEMPT_USAGE_TTL_SECONDS: Final = 24 * 3600


def add_llm_call(usage: LlmUsage, prompt_tokens: int, completion_tokens: int) -> None:
    """One LLM request and the tokens its response reported (0 for a failed request)."""
    usage.calls += 1
    usage.prompt_tokens += prompt_tokens
    usage.completion_tokens += completion_tokens


def add_embedding_call(usage: EmbeddingUsage, tokens: int) -> None:
    """One embeddings request and the tokens its response reported."""
    usage.calls += 1
    usage.tokens += tokens


def add_arxiv_request(usage: ArxivUsage, gate_wait_seconds: float) -> None:
    """One request sent to arXiv after waiting `gate_wait_seconds` at the rate gate."""
    usage.requests += 1
    usage.gate_wait_ms = round(usage.gate_wait_ms + gate_wait_seconds * 1000, 3)


def add_arxiv_cache_hit(usage: ArxivUsage) -> None:
    usage.cache_hits += 1


def add_usage(total: Usage, more: Usage) -> None:
    """Add every figure of `more` to `total`."""
    total.llm.calls += more.llm.calls
    total.llm.prompt_tokens += more.llm.prompt_tokens
    total.llm.completion_tokens += more.llm.completion_tokens
    total.embeddings.calls += more.embeddings.calls
    total.embeddings.tokens += more.embeddings.tokens
    total.arxiv.requests += more.arxiv.requests
    total.arxiv.cache_hits += more.arxiv.cache_hits
    total.arxiv.gate_wait_ms = round(total.arxiv.gate_wait_ms + more.arxiv.gate_wait_ms, 3)


def usage_since(now: Usage, before: Usage) -> Usage:
    """What was spent between the snapshot `before` and `now` (both of one ledger)."""
    return Usage(
        llm=LlmUsage(
            calls=now.llm.calls - before.llm.calls,
            prompt_tokens=now.llm.prompt_tokens - before.llm.prompt_tokens,
            completion_tokens=now.llm.completion_tokens - before.llm.completion_tokens,
        ),
        embeddings=EmbeddingUsage(
            calls=now.embeddings.calls - before.embeddings.calls,
            tokens=now.embeddings.tokens - before.embeddings.tokens,
        ),
        arxiv=ArxivUsage(
            requests=now.arxiv.requests - before.arxiv.requests,
            cache_hits=now.arxiv.cache_hits - before.arxiv.cache_hits,
            gate_wait_ms=round(now.arxiv.gate_wait_ms - before.arxiv.gate_wait_ms, 3),
        ),
    )


def is_empty(usage: Usage) -> bool:
    return usage == Usage()


class AttemptUsage:
    """What the failed attempts of one job's stage spent, kept in Redis across retries.

    One Redis list per (job, stage): each attempt that ends without handing the
    job on (a retry, a requeue) appends its own spending once; the next attempt
    reads them all back. The list expires a day after the last write.
    """

    def __init__(self, redis: redis.Redis, job_id: str, stage: str) -> None:
        """
        Args:
            redis: the shared Redis.
            job_id: the job whose stage this is.
            stage: the stage's name, e.g. "summarize".
        """
        self._redis = redis
        self._key = f"{ATTEMPT_USAGE_PREFIX}{job_id}:{stage}"

    def keep(self, spent: Usage) -> None:
        """Record one failed attempt's spending (nothing is written when it spent nothing)."""
        if is_empty(spent):
            return
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.rpush(self._key, spent.model_dump_json())
        pipeline.expire(self._key, ATTEMPT_USAGE_TTL_SECONDS)
        pipeline.execute()

    def earlier(self) -> Usage:
        """The sum of what every earlier attempt recorded (zero when none did)."""
        total = Usage()
        for raw in self._redis.lrange(self._key, 0, -1):
            try:
                add_usage(total, Usage.model_validate_json(raw))
            except ValueError:
                continue  # written by something else: not ours to count
        return total
