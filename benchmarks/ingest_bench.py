"""Loading benchmark: HTML extraction quality, per-format throughput, and --where at 1M documents.

1. Extraction quality: real Russian news articles (read from shared/data/news-ru at run time,
   never stored) wrapped in the four page layouts of tests/html_pages.py (menus, related
   links, comments, footers, ads, cookie notices). Kept: the share of the article's characters
   (by paragraph) found verbatim in the extracted text; leaked: the share of the boilerplate
   lines' characters found in it.
2. Throughput of ``load_documents`` per format (pages/s, MB/s of input), with trafilatura's
   own ``extract`` on the same HTML bytes as the anchor.
3. ``Store.allowed_passages`` with ``where`` filters on a synthetic store of 1M documents
   (written straight into a Store, no embedding).

    .venv/bin/python benchmarks/ingest_bench.py [--articles 6] [--docs 1000000]

Writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _env import DATA, RESULTS, environment  # noqa: E402
from format_files import write_docx, write_pdf, write_warc  # noqa: E402
from html_pages import HARD_LAYOUTS, LAYOUTS, Article, page  # noqa: E402

from ragkit.ingest.loaders import load_documents  # noqa: E402


def _articles(n: int) -> list[Article]:
    out = []
    with gzip.open(DATA / "news-ru" / "ng-articles.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            text = rec.get("text") or ""
            if len(text) < 1500 or not rec.get("date"):
                continue
            sentences = [s.strip() + "." for s in text.replace("\n", " ").split(". ") if s.strip()]
            paragraphs = tuple(" ".join(sentences[i:i + 3]).replace("..", ".") for i in range(0, len(sentences), 3))
            out.append(Article(title=rec["title"].strip(), paragraphs=paragraphs, date=rec["date"][:10],
                               author="Редакция", site="www.ng.ru", site_name="Независимая газета"))
            if len(out) == n:
                break
    return out


def _norm(text: str) -> str:
    return " ".join(text.split())


def quality_by_mode(articles: list[Article]) -> dict:
    """Kept and leaked shares of extract_page with trafilatura's precision mode on and off."""
    from ragkit.ingest.html import extract_page

    out = {}
    for precision in (True, False):
        kept = total = leak = boiler = 0
        for article in articles:
            for layout in LAYOUTS + HARD_LAYOUTS:
                markup, boilerplate = page(article, layout)
                text = _norm(extract_page(markup.encode("utf-8"), precision=precision).text)
                kept += sum(len(p) for p in article.paragraphs if _norm(p) in text)
                total += sum(len(p) for p in article.paragraphs)
                leak += sum(len(b) for b in boilerplate if _norm(b) in text)
                boiler += sum(len(b) for b in boilerplate)
        out["favor_precision" if precision else "balanced"] = {"kept_share": kept / total, "leaked_share": leak / boiler}
    return out


def quality(articles: list[Article], tmp: Path) -> dict:
    kept_chars = total_chars = leak_chars = boiler_chars = 0
    per_layout: dict[str, list[float]] = {}
    titles = dates = 0
    leaked_by_layout: dict[str, list[float]] = {}
    for i, article in enumerate(articles):
        for layout in LAYOUTS + HARD_LAYOUTS:
            markup, boilerplate = page(article, layout)
            path = tmp / f"q{i}-{layout}.html"
            path.write_text(markup, encoding="utf-8")
            docs, _ = load_documents([path])
            text = _norm(docs[0].text) if docs else ""
            k = sum(len(p) for p in article.paragraphs if _norm(p) in text)
            t = sum(len(p) for p in article.paragraphs)
            leak = sum(len(b) for b in boilerplate if _norm(b) in text)
            kept_chars, total_chars = kept_chars + k, total_chars + t
            leak_chars, boiler_chars = leak_chars + leak, boiler_chars + sum(len(b) for b in boilerplate)
            per_layout.setdefault(layout, []).append(k / t)
            leaked_by_layout.setdefault(layout, []).append(leak / sum(len(b) for b in boilerplate))
            titles += bool(docs) and _norm(docs[0].title) == _norm(article.title)
            dates += bool(docs) and docs[0].date == article.date
    pages = len(articles) * len(LAYOUTS + HARD_LAYOUTS)
    return {"pages": pages, "kept_share": kept_chars / total_chars, "leaked_share": leak_chars / boiler_chars,
            "title_right": titles / pages, "date_right": dates / pages,
            "kept_share_by_layout": {k: sum(v) / len(v) for k, v in per_layout.items()},
            "leaked_share_by_layout": {k: sum(v) / len(v) for k, v in leaked_by_layout.items()}}


def _rate(paths: list[Path], repeat: int = 1) -> dict:
    size = sum(p.stat().st_size for p in paths)
    runs = []
    for _ in range(repeat):  # best of ``repeat``
        start = time.perf_counter()
        docs, report = load_documents(paths)
        runs.append(time.perf_counter() - start)
    seconds = min(runs)
    return {"files": len(paths), "documents": len(docs), "skipped": len(report.skipped), "mb": size / 1e6,
            "seconds": seconds, "docs_per_s": len(docs) / seconds, "mb_per_s": size / 1e6 / seconds}


def throughput(articles: list[Article], tmp: Path, copies: int) -> dict:
    import trafilatura

    pages = [(a, layout) for a in articles for layout in LAYOUTS] * copies
    html_dir = tmp / "html"
    html_dir.mkdir()
    blobs = []
    for i, (a, layout) in enumerate(pages):
        data = page(a, layout)[0].encode("utf-8")
        (html_dir / f"p{i:04d}.html").write_bytes(data)
        blobs.append(data)
    out: dict = {"html": _rate(sorted(html_dir.iterdir()), repeat=3)}
    runs = []
    for _ in range(3):  # best of 3, like _rate's mean of 3 on this shared machine
        start = time.perf_counter()
        for data in blobs:
            trafilatura.extract(data, with_metadata=True, include_comments=False)
        runs.append(time.perf_counter() - start)
    seconds = min(runs)
    out["trafilatura_extract_anchor"] = {"documents": len(blobs), "seconds": seconds, "docs_per_s": len(blobs) / seconds,
                                         "mb_per_s": sum(map(len, blobs)) / 1e6 / seconds}
    warc = tmp / "crawl.warc.gz"
    write_warc(warc, [(f"https://www.ng.ru/a/{i}.html", data, "2024-05-04T06:00:00Z") for i, data in enumerate(blobs)],
               extra=False)
    out["warc_gz"] = _rate([warc])
    pdf_dir, docx_dir = tmp / "pdf", tmp / "docx"
    pdf_dir.mkdir()
    docx_dir.mkdir()
    for i, a in enumerate(articles * copies):
        write_pdf(pdf_dir / f"d{i:03d}.pdf", [list(a.paragraphs[j:j + 4]) for j in range(0, len(a.paragraphs), 4)],
                  title=a.title, cyrillic=True)
        write_docx(docx_dir / f"d{i:03d}.docx", list(a.paragraphs), title=a.title)
    out["pdf"] = _rate(sorted(pdf_dir.iterdir()))
    out["pdf"]["pages"] = sum(len(d.pages) for d in load_documents([pdf_dir])[0])
    out["pdf"]["pages_per_s"] = out["pdf"]["pages"] / out["pdf"]["seconds"]
    out["docx"] = _rate(sorted(docx_dir.iterdir()))
    return out


def where_at_scale(n: int, tmp: Path) -> dict:
    import numpy as np

    from ragkit import Document, Filters
    from ragkit.store.sqlite import Store

    rng = random.Random(0)
    path = tmp / "store.sqlite"
    store = Store.create(path)
    start = time.perf_counter()
    batch = 50_000
    for lo in range(0, n, batch):
        docs = [Document(id=f"d{i}", text="текст", title="t", date=f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                         source=f"/data/src{i % 20}.jsonl",
                         metadata={"author": f"author{rng.randrange(1000)}", "site": f"site{rng.randrange(50)}.ru",
                                   "tags": [f"tag{rng.randrange(200)}" for _ in range(2)]})
                for i in range(lo, min(n, lo + batch))]
        rows = store.add_documents(docs, [False] * len(docs))
        store.add_passages((r - 1, r, 0, 5) for r in rows)
    store.commit()
    write_s = time.perf_counter() - start
    store.close()
    store = Store.open(path)
    cases = {
        "author (0.1%)": Filters(where={"author": "author7"}),
        "site (2%)": Filters(where={"site": "site3.ru"}),
        "tags (1%)": Filters(where={"tags": "tag5"}),
        "author+site": Filters(where={"author": "author7", "site": "site3.ru"}),
        "site + since (2% x 1/3)": Filters(where={"site": "site3.ru"}, since="2024-09-01"),
        "3 sites (6%)": Filters(where={"site": ["site1.ru", "site2.ru", "site3.ru"]}),
        "missing field": Filters(where={"nobody": "x"}),
        "since only (no where)": Filters(since="2024-09-01"),
    }
    store.allowed_passages(Filters(since="2024-01-01"))  # read the cached columns once (as the first filter does)
    out: dict = {"documents": n, "write_seconds": write_s, "store_mb": path.stat().st_size / 1e6, "cases": {}}
    for name, f in cases.items():
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            ids = store.allowed_passages(f)
            times.append(time.perf_counter() - t0)
        out["cases"][name] = {"matched": int(np.asarray(ids).size), "median_ms": sorted(times)[2] * 1000,
                              "min_ms": min(times) * 1000}
    store.close()
    return out


def warc_memory(articles: list[Article], tmp: Path, payload_mb: int) -> dict:
    """Peak memory of loading a large WARC in a fresh process: one big non-HTML response
    (random bytes) among the HTML pages, against a WARC of the same pages alone."""
    import subprocess

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    pages = [(f"https://www.ng.ru/m/{i}.html", page(a, layout)[0].encode("utf-8"), "2024-05-04T06:00:00Z")
             for i, (a, layout) in enumerate((a, layout) for a in articles for layout in LAYOUTS)]
    small, big = tmp / "small.warc", tmp / "big.warc"
    write_warc(small, pages, extra=False)
    blob = tmp / "blob.bin"
    with open(blob, "wb") as fh:
        for _ in range(payload_mb):
            fh.write(os.urandom(1 << 20))
    with open(big, "wb") as out:
        out.write(small.read_bytes())
        writer = WARCWriter(out, gzip=False)
        with open(blob, "rb") as payload:
            http = StatusAndHeaders("200 OK", [("Content-Type", "video/mp4")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record("https://www.ng.ru/video.mp4", "response", payload=payload,
                                                          length=payload_mb << 20, http_headers=http))
        out.write(small.read_bytes())
    blob.unlink()
    script = ("import resource, sys\nfrom ragkit.ingest.loaders import load_documents\n"
              "docs, report = load_documents([sys.argv[1]])\n"
              "print(len(docs), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out: dict = {}
    for name, path in (("pages_only", small), ("with_big_record", big)):
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
        n, rss_kb = run.stdout.split()
        out[name] = {"file_mb": path.stat().st_size / 1e6, "documents": int(n), "peak_rss_mb": int(rss_kb) / 1024,
                     "seconds": time.perf_counter() - start}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=6)
    ap.add_argument("--copies", type=int, default=4, help="repeat the pages for throughput")
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--warc-mb", type=int, default=2048, help="size (MB) of the big record in the WARC memory check")
    ap.add_argument("--parts", default="quality,throughput,where,memory")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    import logging

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    articles = _articles(args.articles)
    with tempfile.TemporaryDirectory(prefix="ragkit-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        target = RESULTS / "ingest.json"
        result = json.loads(target.read_text(encoding="utf-8")) if target.is_file() and parts != {"quality", "throughput", "where", "memory"} else {}
        result["environment"] = environment(("ragkit", "trafilatura", "lxml", "warcio", "pypdf", "python-docx", "numpy"))
        load = {"before": os.getloadavg()}
        if "quality" in parts:
            result["quality"] = quality(articles, tmp)
            result["quality_by_mode"] = quality_by_mode(articles)
        if "throughput" in parts:
            result["throughput"] = throughput(articles, tmp, args.copies)
        if "where" in parts:
            result["where"] = where_at_scale(args.docs, tmp)
        if "memory" in parts:
            result["warc_memory"] = warc_memory(articles, tmp, args.warc_mb)
        load["after"] = os.getloadavg()
        result.setdefault("load_average", {})[",".join(sorted(parts))] = load
    RESULTS.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
