"""Reading files on Ray workers: HTML news pages read here, and on 1 and 2 Ray workers.

    RAGKIT_DATA=../shared/data .venv/bin/python benchmarks/ray_load_bench.py [--pages 1200] [--rounds 2]

Pages: NG articles of ``$RAGKIT_DATA/news-ru`` wrapped in the layouts of tests/html_pages.py
(menus, related links, comments), one file each, written to a temporary folder and never kept.
Reading a page is mostly trafilatura's extraction, the CPU-heavy part of ingestion, so this is
the stage that spreads. Configurations, each on one 2-CPU local Ray instance in this process:

- ``local``: :func:`ragkit.ingest.loaders.iter_documents` in this process (one core);
- ``ray-1`` / ``ray-2``: ``RayExecutor(workers=N).load`` (pages read by N actors, merged here).

Every configuration runs ``--rounds`` times, interleaved, and the median is kept; the actor
pool's start (Ray Data starts one pool a stage) is measured apart as the read of two pages.
Writes benchmarks/results/ray_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _env import RESULTS, environment  # noqa: E402
from html_pages import LAYOUTS, page  # noqa: E402
from ingest_bench import _articles  # noqa: E402

from ragkit.ingest.loaders import LoadReport, iter_documents  # noqa: E402
from ragkit.progress import NoProgress  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    from ragkit.build.ray_executor import RayExecutor, start_ray

    start_ray(num_cpus=2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pages"
        folder.mkdir()
        articles = _articles(args.pages)
        for i, article in enumerate(articles):
            (folder / f"{i:05d}.html").write_text(page(article, LAYOUTS[i % len(LAYOUTS)])[0], encoding="utf-8")
        two = Path(tmp) / "two"
        two.mkdir()
        for name in ("00000.html", "00001.html"):
            (two / name).write_bytes((folder / name).read_bytes())
        size = sum(p.stat().st_size for p in folder.iterdir())

        def run(config: str, where: Path) -> tuple[float, list, list]:
            report = LoadReport()
            t = time.perf_counter()
            if config == "local":
                docs = list(iter_documents([where], report))
            else:
                with RayExecutor(workers=int(config.split("-")[1]), files_per_unit=16) as ex:
                    docs = ex.load([str(where)], report, NoProgress())
            return time.perf_counter() - t, docs, report.skipped

        configs = ("local", "ray-1", "ray-2")
        times: dict[str, list[float]] = {c: [] for c in configs}
        starts: dict[str, list[float]] = {c: [] for c in configs[1:]}
        reference = None
        for _ in range(args.rounds):
            for config in configs:
                if config != "local":
                    starts[config].append(run(config, two)[0])
                seconds, docs, skipped = run(config, folder)
                times[config].append(seconds)
                if reference is None:
                    reference = (docs, skipped)
                assert (docs, skipped) == reference, f"{config} read other documents"
    median = {c: statistics.median(v) for c, v in times.items()}
    result = {
        "environment": environment(("ragkit", "ray", "trafilatura", "lxml")),
        "pages": len(articles), "documents": len(reference[0]), "megabytes": round(size / 1e6, 1),
        "rounds": args.rounds,
        "seconds": {c: [round(t, 2) for t in v] for c, v in times.items()},
        "median_s": {c: round(t, 2) for c, t in median.items()},
        "pages_per_s": {c: round(len(articles) / t, 1) for c, t in median.items()},
        "pool_start_s": {c: round(statistics.median(v), 2) for c, v in starts.items()},
        "ray2_over_ray1": round(median["ray-1"] / median["ray-2"], 2),
        "ray2_over_local": round(median["local"] / median["ray-2"], 2),
        "ray1_overhead": round(median["ray-1"] / median["local"] - 1, 3),
        "same_documents_and_report": True,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ray_load.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("pages", "median_s", "pages_per_s", "pool_start_s", "ray2_over_ray1",
                                             "ray2_over_local", "ray1_overhead")}, indent=1))


if __name__ == "__main__":
    main()
