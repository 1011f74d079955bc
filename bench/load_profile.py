"""Where a request's time goes: each load-bench route in-process, against the bare view.

The load bench (bench/load.py) says how fast each route is under wrk; this says why. On the
same stack and data (the bench's own `_stack` and `_seed`), a child process with the bench's
settings sends each route through Django's test client, all middleware included, and
reports per request: the median time, the queries, and the functions that take the time
(cProfile over the timed requests). The ratios to the bare view are what the load bench's
ratios tend to at full load, where every core is busy with requests.

    python bench/load_profile.py [--requests 200] [--top 25] [--route datasets]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import load  # noqa: E402  (bench/ is not a package)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per route")
    parser.add_argument("--top", type=int, default=25, help="functions listed per route")
    parser.add_argument("--route", action="append", help="only these routes (and the bare view)")
    parser.add_argument("--inside", help=argparse.SUPPRESS)  # the child: the reader's token
    args = parser.parse_args()
    routes = {"bare": load.BARE, **load.ROUTES}
    if args.route:
        routes = {k: v for k, v in routes.items() if k == "bare" or k in args.route}
    if args.inside:
        print(json.dumps(profile(routes, args.inside, requests=args.requests, top=args.top)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="medchain-load-profile-"))
    with load._stack(work) as (env, _url):
        token = load._seed(env)["token"]
        argv = [sys.executable, __file__, "--inside", token, "--requests", str(args.requests),
                "--top", str(args.top)]  # fmt: skip
        for route in args.route or []:
            argv += ["--route", route]
        out = subprocess.run(argv, env=env, cwd=load.ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"profiling failed:\n{out.stderr}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for name, row in report.items():
        print(
            f"== {name}: {row['ms']:.2f} ms/request ({row['ratio']:.2f}x the bare view's "
            f"rate), at best {row['cpu_ms']:.2f} ms of this process's CPU "
            f"({row['cpu_ratio']:.2f}x); {row['queries']} queries, {row['bytes']} bytes"
        )
        for sql in row["sql"]:
            print("   ", sql)
        print(row["profile"])
    return 0


def profile(routes: dict[str, str], token: str, *, requests: int, top: int) -> dict[str, Any]:
    """In the child, with the bench's settings: each route's cost per request."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    client = Client(SERVER_NAME="127.0.0.1")
    report: dict[str, Any] = {}
    for name, path in routes.items():
        headers = {} if path in (load.BARE, load.ROUTES["health"]) else {
            "authorization": f"Token {token}"
        }  # fmt: skip

        def get(path: str = path, headers: dict[str, str] = headers) -> Any:
            response = client.get(path, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"{path} answered {response.status_code}: {response.content!r}")
            return response

        for _ in range(20):  # imports, the pool, the chain client, caches
            body = get().content
        queries: list[str] = []
        with connection.execute_wrapper(_counting(queries)):
            get()
        spent, cpu = [], []
        for _ in range(requests):
            started, started_cpu = time.perf_counter(), time.thread_time()
            get()
            spent.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
        # Apart from the timing (it slows what it profiles), in CPU time: waits are not work.
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        for _ in range(requests):
            get()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        report[name] = {
            "ms": 1000 * statistics.median(spent),
            "cpu_ms": 1000 * min(cpu),  # the least disturbed by other work on the machine
            "queries": len(queries),
            "sql": queries,
            "bytes": len(body),
            "profile": _trimmed(out.getvalue()),
        }
    for row in report.values():
        row["ratio"] = report["bare"]["ms"] / row["ms"]
        row["cpu_ratio"] = report["bare"]["cpu_ms"] / row["cpu_ms"]
    return report


def _counting(queries: list[str]) -> Any:
    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql[:200])
        return execute(sql, params, many, context)

    return wrapper


def _trimmed(text: str) -> str:
    """The tables of pstats, without its preamble (file names, call totals)."""
    lines = text.splitlines()
    return "\n".join(line for line in lines if (line.strip() and ":" in line) or "ncalls" in line)


if __name__ == "__main__":
    sys.exit(main())
