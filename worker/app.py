"""The Celery application: `celery -A worker.app worker` and `research-arm worker` run it.

The configuration is a promise evaluated on first use, so importing this
module reads no environment and opens no connection.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from celery.concurrency.thread import TaskPool as ThreadTaskPool

from worker import resources
from worker.celery_config import celery_config
from worker.heartbeat import install_heartbeat
from worker.logs import configure_logging
from worker.metrics import enable_multiprocess, worker_metrics
from worker.settings import load_settings

app = Celery("research_arm", include=["tasks.pipeline", "tasks.corpus_tasks"])
app.add_defaults(lambda: celery_config(load_settings()))
install_heartbeat(app)


@signals.setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Connecting to this signal stops Celery from installing its own handlers.
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)


@signals.worker_init.connect
def _provide_resources(**_: Any) -> None:
    # In the main process, before the pool starts: prefork children inherit
    # the recipe, not clients.
    resources.provide_resources(load_settings)


@signals.worker_process_init.connect
def _open_child_resources(**_: Any) -> None:
    # Prefork children build their own clients after the fork.
    resources.open_resources()


@signals.worker_ready.connect
def _open_resources_for_threads(sender: Any, **_: Any) -> None:
    # The thread pool runs tasks in the main process, where no
    # worker_process_init is sent. Prefork's parent runs no task and must not
    # hold clients its children would inherit.
    if isinstance(sender.pool, ThreadTaskPool):
        resources.open_resources()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _close_resources(**_: Any) -> None:
    resources.close_resources()


@signals.worker_init.connect
def _refuse_another_embedding_model(**_: Any) -> None:
    # In the main process, before any task: a collection written with another
    # model would fail every recall and store. SystemExit is not caught by
    # Celery's signal dispatch, so the worker stops here with the reason.
    from worker.corpus_admin import check_index_at_start

    check_index_at_start(load_settings())


@signals.worker_init.connect
def _enable_worker_metrics(**_: Any) -> None:
    # In the main process, before the pool starts: every process of this
    # worker then records into METRICS_DIR, where the sidecar reads.
    enable_multiprocess(load_settings().effective_metrics_dir)


def _task_labels(task: Any, request: Any) -> tuple[str, str, str]:
    delivery_info = getattr(request, "delivery_info", None) or {}
    return task.name, request.hostname or "", delivery_info.get("routing_key") or ""


@signals.task_success.connect
def _count_task_success(sender: Any, **_: Any) -> None:
    worker_metrics().record_task_succeeded(*_task_labels(sender, sender.request))


@signals.task_retry.connect
def _count_task_retry(sender: Any, request: Any, **_: Any) -> None:
    worker_metrics().record_task_retried(*_task_labels(sender, request))


@signals.task_failure.connect
def _count_task_failure(sender: Any, exception: BaseException, **_: Any) -> None:
    worker_metrics().record_task_failed(
        *_task_labels(sender, sender.request), type(exception).__name__
    )
