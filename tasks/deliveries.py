"""How many times a stage's message arrived without its delivery ever ending: the delivery limit.

A message whose processing kills the worker (out of memory, a crash in a
native library) goes back to the queue — at once under prefork (reject on
worker lost), after the visibility timeout when the whole worker died — and
would kill the next worker too, forever. Redis keeps a count per message:

- each arrival adds one (`arrive`); the count lives in Redis, so it survives
  the worker's death and restarts;
- each delivery that ends in any way our code sees — success, failure, a
  Celery retry, a message handed back on shutdown — removes it (`finish`);
- so the count is the number of consecutive deliveries whose worker died,
  plus the one arriving now. When it reaches MAX_DELIVERIES the stage fails
  at once with DeliveryLimitExceeded instead of running again.

kombu's Redis transport marks every restored message `redelivered`, whether
its worker died or our code handed it back (a requeueing reject), so that flag
cannot tell the two apart; the count can. A Celery retry is a new message
with the same task id and `retries + 1`: the key includes `retries`, so a
retried stage starts a count of its own.
"""

from __future__ import annotations

from typing import Final

import redis

from tasks.constants import DELIVERIES_PREFIX
from tasks.errors import DeliveryLimitExceeded

# A dead worker's message comes back within the visibility timeout, or later
# when the queue is long; a count idle for a day belongs to no live message.
DELIVERY_COUNT_TTL_SECONDS: Final = 24 * 3600


def delivery_key(task_id: str, retries: int) -> str:
    return f"{DELIVERIES_PREFIX}{task_id}:{retries}"


class DeliveryCounter:
    """Counts the unfinished deliveries of one message (task id and retry number) in Redis."""

    def __init__(self, redis: redis.Redis, task_id: str, retries: int) -> None:
        """
        Args:
            redis: the broker's Redis (the count must outlive any worker).
            task_id: the stage task's id (each chain stage has its own).
            retries: the message's `retries` (a Celery retry is a new message).
        """
        self._redis = redis
        self._key = delivery_key(task_id, retries)

    def arrive(self) -> int:
        """Count this delivery; return how many are unfinished now, this one included."""
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.incr(self._key)
        pipeline.expire(self._key, DELIVERY_COUNT_TTL_SECONDS)
        count, _ = pipeline.execute()
        return int(count)

    def finish(self) -> None:
        """This delivery ended (whatever its outcome): the message's count starts again."""
        self._redis.delete(self._key)

    def check(self, stage: str, max_deliveries: int) -> int:
        """Count this delivery; raise DeliveryLimitExceeded if it is the `max_deliveries`-th.

        The count is removed before raising: the failure ends the delivery.
        """
        count = self.arrive()
        if count >= max_deliveries:
            self.finish()
            raise DeliveryLimitExceeded.for_stage(stage, count)
        return count
