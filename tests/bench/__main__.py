"""`make bench`: research-arm's benchmark. Prints the machine, the versions and a table per case.

    .venv/bin/python -m tests.bench                # every case, about 4 minutes
    .venv/bin/python -m tests.bench --cases latency,overhead --runs 10
    .venv/bin/python -m tests.bench --profile      # + where the worker's CPU goes (py-spy)

Everything runs on this machine: a private redis-server on a free loopback
port, the fake arXiv and LLM servers in processes of their own, and real
`research-arm worker` processes with the product's default settings unless
--pool, --concurrency or --env say otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from tests.bench import cases, report
from tests.bench.cpu_profile import CpuProfile, categorise, py_spy
from tests.bench.stack import BenchStack, FreshQueries, WorkerShape
from worker.settings import Settings

CASES = ("latency", "throughput", "overhead", "repeat", "cpu", "fanout", "memory", "scale")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}"
    )
    parser.add_argument("--runs", type=int, default=7, help="jobs per size in the latency case")
    parser.add_argument(
        "--pool", default=defaults["worker_pool"].default, choices=["threads", "prefork", "solo"]
    )
    parser.add_argument("--concurrency", type=int, default=defaults["worker_concurrency"].default)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for every worker (repeatable)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the worker with py-spy during the overhead case",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    args.cases = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    return args


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    extra_env = tuple(tuple(item.split("=", 1)) for item in args.env)
    shape = WorkerShape(args.pool, args.concurrency, extra_env)
    described = f"pool={shape.pool}, concurrency={shape.concurrency}" + "".join(
        f", {name}={value}" for name, value in extra_env
    )
    work_dir = Path(tempfile.mkdtemp(prefix="research-arm-bench-"))
    queries = FreshQueries(seed=time.time_ns())
    # Printed in CASES order; run in the order that changes the fakes' latency least.
    sections: dict[str, str] = {}
    started = time.monotonic()
    with BenchStack(work_dir, shape) as stack:
        with redis.Redis.from_url(stack.redis.url) as client:
            machine = report.MachineInfo.collect(str(client.info("server")["redis_version"]))
        _say(f"work directory {work_dir}")
        if {"latency", "throughput"} & set(args.cases):
            _say("starting one worker")
            cases.ensure_workers(stack, queries, 1)
        if "latency" in args.cases:
            _say(f"1. latency: {args.runs} jobs of 5, 10 and 20 papers")
            sections["latency"] = _attempt(
                "latency",
                lambda: report.latency_table(cases.latency_case(stack, queries, args.runs)),
            )
        if "throughput" in args.cases:
            loads = [(20, 3), (100, 1)]
            _say("2. throughput: 20 and 100 concurrent jobs on one worker process")

            def throughput() -> str:
                rows = cases.throughput_case(stack, queries, loads, processes=1)
                _say(f"2. throughput: the same on {machine.cores} worker processes")
                rows += cases.throughput_case(stack, queries, loads, processes=machine.cores)
                return report.throughput_table(rows)

            sections["throughput"] = _attempt("throughput", throughput)
        if {"overhead", "repeat", "cpu", "fanout"} & set(args.cases):
            cases.ensure_workers(stack, queries, 1)
        if "repeat" in args.cases:
            _say("4. repeat jobs")
            sections["repeat"] = _attempt(
                "repeat", lambda: report.repeat_table(cases.repeat_case(stack, queries, runs=5))
            )
        if "cpu" in args.cases:
            _say("worker CPU per job: 10 fresh 5-paper jobs, then the same with papers embedded")
            sections["cpu"] = _attempt(
                "cpu", lambda: report.cpu_table(cases.cpu_case(stack, queries, jobs=10))
            )
        if "overhead" in args.cases:
            _say("3. engine overhead: full job against the no-op chain, upstream latency 0")
            sections["overhead"] = _attempt(
                "overhead", lambda: _overhead(stack, queries, args.profile, work_dir)
            )
        if "fanout" in args.cases:
            _say("fan-out shape: threads in one task against a chord per paper")
            sections["fanout"] = _attempt(
                "fanout",
                lambda: report.fanout_table(
                    cases.fanout_case(stack, queries, runs=5, sizes=(5, 20), concurrent=20),
                    concurrent=20,
                ),
            )
        if "memory" in args.cases:
            _say("5. memory: 200 jobs on a fresh worker")
            sections["memory"] = _attempt(
                "memory",
                lambda: report.memory_table(cases.memory_case(stack, queries, 200, 20)),
            )
        if "scale" in args.cases:
            _say("6. scale-out: 1, 2 and 4 worker processes")
            sections["scale"] = _attempt(
                "scale",
                lambda: report.scale_out_table(
                    cases.scale_out_case(stack, queries, (1, 2, 4), jobs=50, rounds=2), jobs=50
                ),
            )
    elapsed = time.monotonic() - started
    print(report.header(machine, described))
    for section in (sections[name] for name in CASES if name in sections):
        print()
        print(section)
    print(f"\n_{elapsed:.0f} s in all._")
    if args.keep:
        _say(f"kept {work_dir}")
    else:
        stack.remove_work_dir()
    return 0


def _attempt(case: str, run: Callable[[], str]) -> str:
    """The case's table, or a line saying why it has none (the other cases still run)."""
    try:
        return run()
    except Exception as exc:  # a case that breaks must not cost the others' figures
        _say(f"case {case} failed: {exc!r}")
        return f"### {case}: no figures\n\nThe case failed: `{exc!r}`"


def _overhead(stack: BenchStack, queries: FreshQueries, profile: bool, work_dir: Path) -> str:
    profiler: list[CpuProfile] = []
    executable = py_spy()

    def start() -> None:
        if profile and executable:
            output = work_dir / f"py-spy-{len(profiler)}.txt"
            profiler.append(CpuProfile(executable, stack.workers[0].pid, output))

    def stop() -> None:
        if profiler:
            profiler[-1].stop()

    result = cases.overhead_case(stack, queries, 100, 3, start, stop)
    section = report.overhead_table(result)
    outputs = [p.output for p in profiler if p.output.exists()]
    if outputs:
        section += "\n\n" + report.profile_table(_combined(outputs, work_dir))
    return section


def _combined(outputs: list[Path], work_dir: Path) -> list[tuple[str, float]]:
    merged = work_dir / "py-spy.txt"
    merged.write_text("".join(p.read_text() for p in outputs))
    return categorise(merged)


if __name__ == "__main__":
    sys.exit(main())
