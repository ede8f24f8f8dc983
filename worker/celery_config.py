"""Celery configuration derived from the settings, in one place.

Celery's defaults that lose work are overridden on purpose here: messages are
acknowledged after the task ends, a message whose worker died is rejected back
to the queue, each worker process reserves one message at a time, and the
Redis visibility timeout outlasts any task so a live task is never handed to a
second worker.
"""

from __future__ import annotations

from typing import Any

from tasks.constants import QUEUE
from worker.redis_tls import redis_ssl_options
from worker.settings import Settings


def restore_sweep_seconds(visibility_timeout: int) -> int:
    """How often kombu looks for messages abandoned by dead workers.

    kombu's default sweep runs about every 100 s; a quarter of the visibility
    timeout (at least 1 s, at most 10 s) brings an abandoned message back
    within the timeout plus seconds.
    """
    return max(1, min(10, visibility_timeout // 4))


# WORKER_POOL names and the pool each runs. Celery's thread pool cannot cancel a
# running task on a cold shutdown; ours can (see worker.thread_pool).
POOL_IMPLEMENTATIONS: dict[str, str] = {
    "threads": "worker.thread_pool:CancellableThreadPool",
    "prefork": "prefork",
    "solo": "solo",
}


def pool_implementation(pool: str) -> str:
    """The Celery pool (an alias or a class path) that runs WORKER_POOL `pool`."""
    return POOL_IMPLEMENTATIONS[pool]


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings for broker, backend, reliability and events."""
    broker_url = settings.broker_url()
    visibility_timeout = settings.broker_visibility_timeout_seconds
    transport_options: dict[str, Any] = {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": restore_sweep_seconds(visibility_timeout),
        "unacked_restore_throttle": 1,
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }
    tls = redis_ssl_options(broker_url)
    return {
        "broker_url": broker_url,
        "result_backend": broker_url,
        # With a rediss:// URL the certificate is checked unless the URL says
        # otherwise (kombu alone skips the check when the URL does not ask).
        "broker_use_ssl": tls,
        "redis_backend_use_ssl": tls,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": {"visibility_timeout": visibility_timeout},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "redis_socket_timeout": 30,
        "redis_socket_connect_timeout": 10,
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 10,
        # JSON only: a pickled message is refused before it is decoded.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # How long prefork waits for a result a killed child may still have sent
        # before calling its job lost and requeueing it (Celery's default: 10 s).
        "worker_lost_wait": 2.0,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_time_limit": settings.task_time_limit_seconds,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "result_expires": settings.result_expires_seconds,
        # The job id's result is the response alone: extended results would
        # also store the last stage's arguments, the whole job state again.
        "result_extended": False,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "task_default_queue": QUEUE,
        "task_routes": {"research.*": {"queue": QUEUE}},
        "worker_pool": pool_implementation(settings.worker_pool),
        # Refuses malformed task messages and survives a broker restart with
        # tasks running (see worker.consumer); Celery's own consumer exits.
        "worker_consumer": "worker.consumer:ResearchConsumer",
        "worker_concurrency": settings.worker_concurrency,
        # Cold shutdown (SIGQUIT; SIGTERM under REMAP_SIGTERM=SIGQUIT) first
        # lets running tasks finish for this long, then returns unfinished
        # late-ack messages to the queue when the channel closes, instead of
        # leaving them to the visibility timeout.
        "worker_soft_shutdown_timeout": settings.worker_soft_shutdown_timeout_seconds,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
    }
