"""A small JSON cache in Redis, shared by every worker: arXiv responses, LLM summaries."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import redis


class RedisJsonCache:
    """JSON values in Redis under `prefix + key`, each with a TTL.

    ttl_seconds == 0 disables the cache: `get` returns None and `set` does
    nothing, so callers need no special case. A cached value that is not valid
    JSON (written by something else, or cut short) is treated as a miss. A
    cached JSON `null` is indistinguishable from a miss, so do not cache None.
    """

    def __init__(self, redis: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        """
        Args:
            redis: a redis-py client; decode_responses may be True or False.
            prefix: prepended to every key, e.g. `research-arm:arxiv:response:`.
            ttl_seconds: how long a value lives; 0 turns the cache off.
        """
        if ttl_seconds < 0:
            raise ValueError(f"ttl_seconds must be 0 or more, got {ttl_seconds}")
        self._redis = redis
        self._prefix = prefix
        self._ttl_seconds = ttl_seconds

    @property
    def enabled(self) -> bool:
        return self._ttl_seconds > 0

    def get(self, key: str) -> Any | None:
        """The value cached under `key`, or None on a miss."""
        if not self.enabled:
            return None
        try:
            raw = self._redis.get(self._prefix + key)
        except UnicodeDecodeError:  # a client with decode_responses=True met non-UTF-8 bytes
            return None
        return _decode(raw)

    def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        """The values cached under `keys`, in order, None for each miss (one MGET)."""
        if not self.enabled or not keys:
            return [None] * len(keys)
        try:
            raw_values = self._redis.mget([self._prefix + key for key in keys])
        except UnicodeDecodeError:
            # With decode_responses=True one non-UTF-8 value spoils the whole reply
            # (redis-py drops that connection); read the keys one by one instead.
            return [self.get(key) for key in keys]
        return [_decode(raw) for raw in raw_values]

    def set(self, key: str, value: Any, *, ttl_seconds: int | None = None) -> None:
        """Cache `value` (anything `json.dumps` accepts) under `key`.

        `ttl_seconds` shortens the cache's TTL for this value (never lengthens it).
        """
        if not self.enabled:
            return
        ttl = self._ttl_seconds if ttl_seconds is None else min(ttl_seconds, self._ttl_seconds)
        self._redis.set(self._prefix + key, _encode(value), ex=max(1, ttl))

    def set_many(self, items: Mapping[str, Any]) -> None:
        """Cache every key and value of `items`, each with the TTL, in one round trip."""
        if not self.enabled or not items:
            return
        # No MULTI: each SET stands alone, we only want a single round trip.
        pipeline = self._redis.pipeline(transaction=False)
        for key, value in items.items():
            pipeline.set(self._prefix + key, _encode(value), ex=self._ttl_seconds)
        pipeline.execute()


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _decode(raw: object) -> Any | None:
    # redis-py returns bytes, or str when the client decodes responses.
    if not isinstance(raw, str | bytes):
        return None
    try:
        return json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return None
