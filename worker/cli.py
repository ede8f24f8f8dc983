"""`research-arm`: parses the command line and hands off; no logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from schemas.research import ResearchRequest
from tasks.constants import QUEUE
from worker.settings import Settings, load_settings

# Celery is imported only by the commands that use it: `sidecar` and `check`
# must start fast and small, without it.
if TYPE_CHECKING:
    from worker.client import ResearchClient
    from worker.logs import LogFormat


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="research-arm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole local stack in the foreground")
    up.add_argument("--flower", action="store_true", help="also start Flower")
    up.add_argument("--flower-port", type=int, help="Flower's port (default FLOWER_PORT)")
    up.add_argument("--concurrency", type=int, help="worker threads (default WORKER_CONCURRENCY)")

    worker = commands.add_parser("worker", help="run a Celery worker on the research queue")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--pool", choices=["threads", "prefork", "solo"])
    worker.add_argument("--hostname", default="research@%h")

    sidecar = commands.add_parser("sidecar", help="serve /livez /readyz /health /metrics")
    sidecar.add_argument("--host", help="address to listen on (default HEALTH_HOST)")
    sidecar.add_argument("--port", type=int, help="port to listen on (default HEALTH_PORT)")
    sidecar.add_argument("--check", action="store_true", help="same as `research-arm check`")
    commands.add_parser("check", help="exit 0 if the worker's heartbeat is fresh, 1 if not")

    submit = commands.add_parser("submit", help="enqueue a research job")
    submit.add_argument("query")
    submit.add_argument("--max-papers", type=int, default=5)
    submit.add_argument("--from", dest="start_date", help="YYYY-MM-DD")
    submit.add_argument("--to", dest="end_date", help="YYYY-MM-DD")
    submit.add_argument("--category", action="append", default=[], dest="categories")
    submit.add_argument("--min-relevance", type=float, default=0.0)
    submit.add_argument("--no-summaries", action="store_true")
    submit.add_argument("--wait", action="store_true", help="follow the job to its end")
    submit.add_argument("--json", action="store_true", help="print the response object only")
    submit.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")

    status = commands.add_parser("status", help="a job's state and stage")
    status.add_argument("job_id")

    result = commands.add_parser("result", help="a finished job's response as JSON")
    result.add_argument("job_id")
    result.add_argument("--timeout", type=float, default=None)

    corpus = commands.add_parser("corpus", help="the local index of arXiv's metadata snapshot")
    corpus_commands = corpus.add_subparsers(dest="corpus_command", required=True)
    ingest = corpus_commands.add_parser(
        "ingest", help="ingest arXiv metadata snapshot files (.jsonl, .jsonl.gz); resumable"
    )
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--categories", help="keep these categories: cs.CL,cs.LG or cs.*")
    ingest.add_argument("--since", help="keep papers first submitted on or after YYYY-MM-DD")
    ingest.add_argument(
        "--via-queue", action="store_true", help="send chunks to the workers on the queue"
    )
    ingest.add_argument(
        "--chunk-lines", type=int, default=None, help="lines per batch (default 64, queue 256)"
    )
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    corpus_status = corpus_commands.add_parser("status", help="what the index holds")
    corpus_status.add_argument("--json", action="store_true", help="print JSON")

    commands.add_parser("capabilities", help="print the capability manifest")
    schemas = commands.add_parser("schemas", help="write the JSON Schema files")
    schemas.add_argument("--dir", type=Path, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "schemas":
        return _schemas(args)
    if args.command == "capabilities":
        from worker.capabilities import capability_manifest

        print(capability_manifest().model_dump_json(indent=2))
        return 0
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"research-arm: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    from worker.logs import configure_logging

    log_format = configure_logging(settings.log_level, settings.log_format)
    if args.command == "up":
        return _up(args, settings, log_format)
    if args.command == "worker":
        return _worker(args, settings)
    if args.command == "check" or (args.command == "sidecar" and args.check):
        from worker.sidecar import check_liveness

        return check_liveness(settings)
    if args.command == "sidecar":
        from worker.sidecar import serve

        return serve(settings, host=args.host, port=args.port)
    if args.command == "corpus":
        return _corpus(args, settings)
    from worker.client import ResearchClient

    try:
        client = ResearchClient.from_url(settings.broker_url())
    except RuntimeError as exc:
        print(f"research-arm: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "submit":
            return _submit(args, client)
        if args.command == "status":
            print(json.dumps(client.status(args.job_id).__dict__, indent=2))
            return 0
        if args.command == "result":
            return _print_result(client, args.job_id, args.timeout, as_json=True)
    finally:
        client.close()
    return 2


def _schemas(args: argparse.Namespace) -> int:
    from schemas.export import SCHEMA_DIR, write_schema_files

    for path in write_schema_files(args.dir or SCHEMA_DIR):
        print(path)
    return 0


def _corpus(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.corpus_ingest import DEFAULT_BATCH_LINES, SnapshotFilter
    from worker import corpus_commands as corpus

    if args.corpus_command == "status":
        status, note = corpus.read_status(settings)
        if note:
            print(f"research-arm: {note}", file=sys.stderr)
        if status is None:
            return 1
        if args.json:
            print(status.model_dump_json(indent=2))
        else:
            for key, value in status.model_dump(mode="json", exclude={"coverage"}).items():
                print(f"{key}: {value}")
        return 0
    try:
        snapshot_filter = SnapshotFilter(
            corpus.parse_categories(args.categories), corpus.parse_since(args.since)
        )
    except ValueError as exc:
        print(f"research-arm: --since: {exc}", file=sys.stderr)
        return 2
    missing = [str(path) for path in args.paths if not path.is_file()]
    if missing:
        print(f"research-arm: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    from tasks.errors import MemoryUnavailable

    try:
        if args.via_queue:
            summary = corpus.ingest_via_queue(
                settings,
                args.paths,
                snapshot_filter,
                chunk_lines=args.chunk_lines or corpus.QUEUE_CHUNK_LINES,
            )
        else:
            summary = corpus.ingest_here(
                settings,
                args.paths,
                snapshot_filter,
                batch_lines=args.chunk_lines or DEFAULT_BATCH_LINES,
            )
    except MemoryUnavailable as exc:
        hint = (
            ""
            if settings.qdrant_url
            else " (is a worker holding the embedded store? stop it, or use --via-queue)"
        )
        print(f"research-arm: ingest stopped, resumable: {exc}{hint}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"research-arm: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(corpus.summary_json(summary), indent=2))
    else:
        print(corpus.summary_text(summary), file=sys.stderr)
    return 0


def _up(args: argparse.Namespace, settings: Settings, log_format: LogFormat) -> int:
    from worker.stack import LocalStack, StackOptions

    # The stack logs as `up` does: console when `up` runs on a terminal.
    options = StackOptions(
        flower=args.flower,
        flower_port=args.flower_port,
        concurrency=args.concurrency,
        log_format=log_format,
    )
    return LocalStack(settings, options).run()


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.onnx_embedder import EmbeddingModelError
    from worker.app import app
    from worker.celery_config import pool_implementation
    from worker.resources import check_embedding_model

    try:
        check_embedding_model(settings)
    except EmbeddingModelError as exc:
        print(f"research-arm: bad embedding model: {exc}", file=sys.stderr)
        return 2

    pool = args.pool or settings.worker_pool
    # The pool comes from the configuration alone: Celery's --pool option knows
    # only its own aliases (not our cancellable thread pool), and cannot tell
    # `--pool=prefork` from its default, which lets the configured pool win.
    app.conf.worker_pool = pool_implementation(pool)
    argv = [
        "worker",
        f"--queues={QUEUE}",
        f"--concurrency={args.concurrency or settings.worker_concurrency}",
        f"--hostname={args.hostname}",
        f"--loglevel={settings.log_level}",
        "--task-events",
        # Gossip and mingle cost start-up time and broker traffic that a
        # queue worker does not need; Flower works from task events.
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv)
    return 0


def _submit(args: argparse.Namespace, client: ResearchClient) -> int:
    fields = {
        "query": args.query,
        "max_papers": args.max_papers,
        "start_date": args.start_date,
        "end_date": args.end_date,
        "categories": args.categories,
        "include_summaries": not args.no_summaries,
        "min_relevance": args.min_relevance,
    }
    try:
        request = ResearchRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        from tasks.job import invalid_request_from

        print(f"research-arm: {invalid_request_from(exc)}", file=sys.stderr)
        return 2
    job_id = client.submit(request)
    if not args.wait:
        print(job_id)
        return 0
    print(f"job {job_id}", file=sys.stderr)
    _follow(client, job_id, args.timeout)
    return _print_result(client, job_id, timeout=5.0, as_json=args.json)


def _follow(client: ResearchClient, job_id: str, timeout: float) -> None:
    from worker.render import ProgressDisplay

    display = ProgressDisplay()
    deadline = time.monotonic() + timeout
    status = client.status(job_id)
    while not status.finished and time.monotonic() < deadline:
        display.show(status)
        time.sleep(0.2)
        status = client.status(job_id)
    display.finish(status)


def _print_result(
    client: ResearchClient, job_id: str, timeout: float | None, *, as_json: bool
) -> int:
    from celery.exceptions import TimeoutError as CeleryTimeoutError

    from worker.client import JobFailed

    try:
        response = client.result(job_id, timeout=timeout)
    except JobFailed as exc:
        print(f"research-arm: {exc}", file=sys.stderr)
        return 1
    except CeleryTimeoutError:
        print(f"research-arm: job {job_id} has not finished", file=sys.stderr)
        return 3
    if as_json:
        print(response.model_dump_json(indent=2))
    else:
        from worker.render import render_response

        print(render_response(response))
    return 0


if __name__ == "__main__":
    sys.exit(main())
