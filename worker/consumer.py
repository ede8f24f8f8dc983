"""Celery's consumer, hardened against poison messages.

A message whose headers name a task but whose body or headers do not have the
task protocol's shape (a JSON string or object instead of `[args, kwargs,
embed]`, no `id` header, ...) makes Celery 5.7 raise a plain ValueError or
KeyError while it builds the request. Celery treats that as an unrecoverable
error (the worker exits) or as a lost connection (the consumer restarts in a
tight loop); either way the message goes back to the queue and takes down the
next worker too. Here such a message is refused like any other invalid task
message: logged, then rejected without requeue.

Selected by `worker_consumer` in `worker.celery_config`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.consumer.consumer import Consumer

# Errors Celery raises on a malformed message before any task code runs. Not
# KeyError: kombu's Redis transport counts it among its connection errors.
_MALFORMED_MESSAGE_ERRORS = (ValueError, TypeError, AttributeError, IndexError)


def missing_task_id(message: Any) -> bool:
    """Whether a protocol-2 task message (a `task` header) lacks its `id` header."""
    headers = message.headers
    return isinstance(headers, dict) and "task" in headers and not headers.get("id")


class ResearchConsumer(Consumer):  # type: ignore[misc]  # Celery is untyped
    """Celery's consumer that refuses malformed task messages instead of dying of them."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        on_task_received: Callable[[Any], Any] = super().create_task_handler(*args, **kwargs)
        recoverable = tuple(self.connection_errors) + tuple(self.channel_errors)

        def refuse_malformed(message: Any) -> Any:
            if missing_task_id(message):
                # Celery's KeyError('id') would pass for a lost connection, forever.
                error = InvalidTaskError("the task message has no id header")
                return self.on_invalid_task(None, message, error)
            try:
                return on_task_received(message)
            except recoverable:
                raise  # a broker problem: Celery reconnects and the message comes back
            except _MALFORMED_MESSAGE_ERRORS as exc:
                # Celery's own path for invalid task messages: log, reject, no requeue.
                return self.on_invalid_task(None, message, exc)

        return refuse_malformed
