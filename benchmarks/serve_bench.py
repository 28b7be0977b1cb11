"""Load benchmark of ``ragkit serve`` over a 100k-passage index, on loopback only.

    .venv/bin/python benchmarks/serve_bench.py [--passages 100000] [--rss-requests 10000] [--readme]

Corpus: the synthetic Russian news of ``query_bench.make_corpus`` (real sentences of the shared
``news-ru`` articles, one passage a document), indexed once by a real ``ragkit index`` process
(navec-ru, exact FAISS at this size) into ``benchmarks/.cache/query-N`` (shared with
``query_bench.py``) and reused. Queries: real headlines of ``news-ru/ng-title2doc``, hybrid
mode, k = 10, the CLI's defaults.

Measured in one run, against one ``ragkit serve`` subprocess on 127.0.0.1 and a free port:
- concurrency 1, in hybrid and in BM25 mode: each query timed in-process (``Index.search`` in
  this process, warm, with one BLAS thread as the server runs) and over HTTP (``GET /search``
  on a kept-alive connection), alternately;
  the server's overhead is the p50 of the HTTP times minus the p50 of the in-process times
  (and the median of the paired differences);
- concurrency 8 and 32: that many client threads, one connection each: p50, p99, requests/s;
- the server's own wall and CPU time in each search (its ``Server-Timing`` header), so the
  overhead is also the round trip minus that; and the server process's CPU time per request
  (/proc) against its search thread's, which a busy machine's scheduling delays do not inflate;
- RSS of the server process over ``--rss-requests`` requests at concurrency 8 (one in ten
  hybrid, the rest BM25), sampled every 1,000; the change from the first to the last sample.
Every loop is bounded in count and in time; any non-200 answer counts as an error.
Writes benchmarks/results/serve.json (and a README table with --readme).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, environment, update_readme_table  # noqa: E402
from query_bench import build, percentiles  # noqa: E402

RAGKIT = str(Path(sys.executable).parent / "ragkit")
TIME_LIMIT = 480.0  # seconds for all the HTTP loops together


def rss_mode(i: int) -> str:
    """The RSS phase: one hybrid request in ten, the rest BM25 (10,000 hybrid ones would take too long here)."""
    return "hybrid" if i % 10 == 0 else "lexical"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Client:
    """One kept-alive loopback connection; ``get`` returns (seconds, ok)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.searched = self.search_cpu = float("nan")  # the server's own wall and CPU time in the search (Server-Timing)

    def get(self, query: str, mode: str = "hybrid") -> tuple[float, bool]:
        t = time.perf_counter()
        try:
            self.conn.request("GET", f"/search?k=10&mode={mode}&q={quote(query)}")
            response = self.conn.getresponse()
            body = response.read()
            ok = response.status == 200 and body.startswith(b'{"query"')
            timing = dict(part.strip().split(";dur=") for part in response.getheader("Server-Timing", "").split(","))
            self.searched = float(timing["search"]) / 1000
            self.search_cpu = float(timing["search-cpu"]) / 1000
        except (OSError, http.client.HTTPException, KeyError, ValueError):
            self.conn.close()
            ok = False
        return time.perf_counter() - t, ok


def concurrent(port: int, queries: list[str], threads: int, total: int, deadline: float,
               mode_of: Callable[[int], str] = lambda i: "hybrid") -> dict:
    times: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total))

    def work() -> None:
        client = Client(port)
        while time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            s, ok = client.get(queries[i % len(queries)], mode_of(i))
            with lock:
                times.append(s)
                errors[0] += 0 if ok else 1

    t = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    wall = time.perf_counter() - t
    return {**percentiles(times), "requests_per_s": round(len(times) / wall, 1), "errors": errors[0],
            "wall_s": round(wall, 1), "complete": len(times) == total}


def paired(one: Client, idx, queries: list[str], mode: str, pid: int, deadline: float) -> dict:  # noqa: ANN001
    """Each query in-process then over HTTP, alternately; the server's overhead several ways."""
    inproc, http_times, diffs, inside, search_cpu, errors = [], [], [], [], [], 0
    cpu_before = cpu_seconds(pid)
    for q in queries:
        if time.monotonic() > deadline:
            break
        t = time.perf_counter()
        idx.search(q, k=10, mode=mode)
        a = time.perf_counter() - t
        b, ok = one.get(q, mode)
        errors += 0 if ok else 1
        inproc.append(a)
        http_times.append(b)
        diffs.append(b - a)
        inside.append(b - one.searched)
        search_cpu.append(one.search_cpu)
    n = max(1, len(http_times))
    server_cpu = (cpu_seconds(pid) - cpu_before) * 1000 / n
    thread_cpu = sum(search_cpu) * 1000 / n
    http = {**percentiles(http_times), "requests_per_s": round(len(http_times) / sum(http_times), 1), "errors": errors}
    base = percentiles(inproc)
    return {"in_process": base, "http": http, "overhead_ms": {
        "p50_http_minus_p50_in_process": round(http["p50_ms"] - base["p50_ms"], 3),
        "median_paired_difference": round(float(np.median(diffs)) * 1000, 3),
        "p50_round_trip_minus_server_search_time": round(float(np.median(inside)) * 1000, 3),
        "server_cpu_per_request": round(server_cpu, 3),
        "search_thread_cpu_per_request": round(thread_cpu, 3),
    }}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300, help="paired queries at concurrency 1")
    ap.add_argument("--requests", type=int, default=800, help="requests at concurrency 8 and at 32")
    ap.add_argument("--rss-requests", type=int, default=10_000)
    ap.add_argument("--readme", action="store_true")
    args = ap.parse_args()

    index_path, build_s = build(args.passages)
    import ragkit
    from ragkit.server.live import single_threaded_blas


    queries_file = DATA / "news-ru" / "ng-title2doc" / "queries.jsonl"
    queries = [json.loads(line)["text"] for line in queries_file.read_text(encoding="utf-8").splitlines()][:1000]
    idx = ragkit.Index.open(index_path)
    for q in queries[:20]:
        idx.search(q, k=10)
    single_threaded_blas()  # as the server runs (after loading: FAISS has its own OpenBLAS), for a fair baseline

    port = free_port()
    server = subprocess.Popen([RAGKIT, "serve", "--index", str(index_path), "--host", "127.0.0.1", "--port", str(port)],
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        while True:
            try:
                c = Client(port)
                if c.get(queries[0])[1]:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit(f"ragkit serve did not start: {server.stderr.read() if server.poll() is not None else 'timeout'}")
            time.sleep(0.2)
        deadline = time.monotonic() + TIME_LIMIT
        one = Client(port)
        for q in queries[:50]:  # warm-up over HTTP
            one.get(q)
        pairs = {mode: paired(one, idx, queries[: args.queries], mode, server.pid, deadline) for mode in ("hybrid", "lexical")}
        c1 = pairs["hybrid"]["http"]
        levels = {"1": c1}
        for threads in (8, 32):
            levels[str(threads)] = concurrent(port, queries, threads, args.requests, deadline)

        rss, done, rss_errors = [rss_mb(server.pid)], 0, 0
        rss_deadline = time.monotonic() + max(60.0, deadline - time.monotonic())
        while done < args.rss_requests and time.monotonic() < rss_deadline:
            step = min(1000, args.rss_requests - done)
            r = concurrent(port, queries[done % len(queries):] + queries, 8, step, rss_deadline, rss_mode)
            done += r["n"]
            rss_errors += r["errors"]
            rss.append(rss_mb(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)

    change = (rss[-1] - rss[0]) / rss[0] * 100
    payload = {
        "environment": environment(("ragkit", "numpy", "faiss-cpu", "fastapi", "uvicorn", "starlette", "mcp")),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "index": {"passages": len(idx), "factory": idx.manifest["vectors"]["factory"], "model": idx.manifest["model"]["name"],
                  "build_s": None if build_s is None else round(build_s, 1)},
        "mode": "hybrid", "k": 10,
        "concurrency": levels,
        "paired_concurrency_1": pairs,
        "rss": {"requests": done, "modes": "1 hybrid : 9 lexical", "concurrency": 8, "samples_mb": [round(x, 1) for x in rss], "change_percent": round(change, 2),
                "max_mb": round(max(rss), 1), "errors": rss_errors},
        "errors": sum(v["errors"] for v in levels.values()) + pairs["lexical"]["http"]["errors"] + rss_errors,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(payload, ensure_ascii=False, indent=2))
    if args.readme:
        rows = ["| concurrency | p50 ms | p99 ms | requests/s | errors |", "|---:|---:|---:|---:|---:|"]
        base = pairs["hybrid"]["in_process"]
        rows.append(f"| in-process `Index.search` | {base['p50_ms']:.2f} | {base['p99_ms']:.2f} | "
                    f"{1000 / base['mean_ms']:.0f} | - |")
        for level, v in levels.items():
            rows.append(f"| {level} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['requests_per_s']:.0f} | {v['errors']} |")
        rows += ["", "Server overhead at concurrency 1 (ms), each query in-process and over HTTP in turn:", "",
                 "| mode | in-process p50 | HTTP p50 | p50 difference | round trip - server's search time (p50) | "
                 "server CPU / request | its search thread's CPU |", "|---|---:|---:|---:|---:|---:|---:|"]
        for mode, r in pairs.items():
            o = r["overhead_ms"]
            rows.append(f"| {mode} | {r['in_process']['p50_ms']:.2f} | {r['http']['p50_ms']:.2f} | "
                        f"{o['p50_http_minus_p50_in_process']:.2f} | {o['p50_round_trip_minus_server_search_time']:.2f} | "
                        f"{o['server_cpu_per_request']:.2f} | {o['search_thread_cpu_per_request']:.2f} |")
        env = payload["environment"]
        rows += ["", f"{len(idx):,} passages ({payload['index']['factory']}, {payload['index']['model']}), k = 10, "
                 f"hybrid unless said; RSS over {done:,} requests {rss[0]:.0f} -> {rss[-1]:.0f} MB ({change:+.1f} %); "
                 f"{payload['errors']} errors in all. {env['cpu']}, {env['cpu_count']} cores, load average "
                 f"{payload['load_average'][0]} at the end (shared machine; client and server on the same cores)."]
        update_readme_table("serve-bench", "\n".join(rows))


if __name__ == "__main__":
    main()
