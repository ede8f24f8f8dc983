"""structlog set-up: one call per process, JSON off a terminal, console on one.

`LOG_FORMAT` (`json` or `console`) overrides the terminal's say. `research-arm
up` makes the choice once for its whole stack and hands it to the processes it
starts.

Celery's own stdlib log records go through the same processors, so every line
a worker prints has one shape. Job id, task id and stage are bound through
contextvars by the task layer and appear on every line of a task.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO, TypeAlias

import structlog

LogFormat: TypeAlias = Literal["json", "console"]

_SECRET_KEY = re.compile(r"(password|secret|token|api_key|apikey|authorization)", re.IGNORECASE)
# user:password@ in URLs such as redis://:s3cret@host:6379/0
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<auth>[^/@\s]+)@", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Mask credentials embedded in URLs."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: mask secret-looking keys and credentials inside URLs."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and value is not None:
            event_dict[key] = "***"
        elif isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def chosen_log_format(explicit: LogFormat | None, *, on_terminal: bool) -> LogFormat:
    """The format to log in: `explicit` (LOG_FORMAT) when set, else console on a terminal.

    Console is for a person watching (development); JSON for a collector
    reading a pipe or a file (production), which is where a process runs
    without a terminal.
    """
    if explicit is not None:
        return explicit
    return "console" if on_terminal else "json"


def configure_logging(level: str = "INFO", log_format: LogFormat | None = None) -> LogFormat:
    """Configure structlog and route stdlib logging through it; returns the format chosen.

    `log_format` is LOG_FORMAT; None lets `chosen_log_format` decide by
    whether stderr, where the logs go, is a terminal.
    """
    log_format = chosen_log_format(log_format, on_terminal=sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _CurrentStderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO with the full URL, and Celery logs each
    # task's whole return value on success; the pipeline's own stage_finished
    # and job_finished lines say what matters. Failures still log at ERROR.
    for noisy in ("httpx", "httpcore", "openai", "celery.app.trace"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return log_format
