"""Celery's consumer, hardened against poison messages and a Redis restart.

Three failures of the stock consumer (Celery 5.7, kombu 5.7, Redis transport)
take a whole worker down, and with it every task it is running:

- A message whose headers name a task but whose body or headers do not have
  the task protocol's shape (a JSON string or object instead of
  `[args, kwargs, embed]`, no `id` header, ...) raises a plain ValueError or
  KeyError while Celery builds the request. Celery treats that as an
  unrecoverable error (the worker exits) or as a lost connection (the consumer
  restarts in a tight loop); either way the message goes back to the queue and
  takes down the next worker too. Here it is refused like any other invalid
  task message: logged, then rejected without requeue.
- When the broker connection drops with tasks running, Celery closes the
  connection after kombu has already detached its transport; kombu then tries
  to restore the unacknowledged messages through the missing transport and
  raises AttributeError, which Celery takes for unrecoverable.
- A task that ends after that acknowledges its message through the same dead
  channel: AttributeError again, from the event loop.

In the last two cases the messages are safe in Redis's `unacked` hash and come
back after the visibility timeout; here the error is logged and the worker goes
on (reconnecting, as Celery does for any lost connection).

Selected by `worker_consumer` in `worker.celery_config`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from celery.exceptions import InvalidTaskError
from celery.worker.consumer.consumer import Consumer
from celery.worker.state import active_requests

log = structlog.get_logger("research_arm.consumer")

# Errors Celery raises on a malformed message before any task code runs. Not
# KeyError: kombu's Redis transport counts it among its connection errors.
_MALFORMED_MESSAGE_ERRORS = (ValueError, TypeError, AttributeError, IndexError)


def missing_task_id(message: Any) -> bool:
    """Whether a protocol-2 task message (a `task` header) lacks its `id` header."""
    headers = message.headers
    return isinstance(headers, dict) and "task" in headers and not headers.get("id")


def settle_or_log(settle: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Acknowledge or reject a message; if its connection is gone, say so instead of crashing."""
    try:
        return settle(*args, **kwargs)
    except AttributeError as exc:  # kombu's channel outlived its transport
        log.warning(
            "message_not_settled",
            error=repr(exc),
            note="the broker connection was lost; the message comes back after the "
            "visibility timeout",
        )
        return None


class ResearchConsumer(Consumer):  # type: ignore[misc]  # Celery is untyped
    """Celery's consumer that survives poison messages and a broker restart."""

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

    def call_soon_ack(self, settle: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Every acknowledgement and reject of a task message passes through here.
        return super().call_soon_ack(settle_or_log, settle, *args, **kwargs)

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:  # kombu's restore through the detached transport
            log.warning(
                "broker_connection_cleanup_failed",
                error=repr(error),
                note="unacknowledged messages come back after the visibility timeout",
            )
            self._cancel_unacknowledged_tasks()

    def _cancel_unacknowledged_tasks(self) -> None:
        # The step of Celery's handler that the error above skipped: tasks whose
        # message can no longer be acknowledged stop, rather than run twice.
        if not self.app.conf.worker_cancel_long_running_tasks_on_connection_loss:
            return
        for request in tuple(active_requests):
            if request.task.acks_late and not request.acknowledged:
                try:
                    request.cancel(self.pool)
                except Exception as cancel_error:  # as Celery does: log and go on
                    log.warning("task_cancel_failed", error=repr(cancel_error))
