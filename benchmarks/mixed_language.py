"""A mixed archive: xquad/en's English paragraphs inside the Russian NG corpus, with one model or two.

    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/mixed_language.py

The archive is mostly Russian, so the build picks navec-ru. Built with one model
(``language_vectors=False``), English queries get no dense signal (their dense weight is the
foreign weight, 0). Built with the default second model for the minority language
(:mod:`ragkit.build.languages`), the English paragraphs are embedded by all-MiniLM-L6-v2 too
and English queries take their dense side from those vectors. xquad/en's and ng-title2doc's
queries are evaluated on both in one run, beside the English-only index with all-MiniLM-L6-v2
(benchmarks/results/quality.json). Writes benchmarks/results/mixed_language.json.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, ROOT, environment  # noqa: E402

import ragkit  # noqa: E402


def _build(path: Path, sources: list, language_vectors: bool) -> float:
    """Seconds of a fresh build (no index, no embedding cache left from an earlier run)."""
    shutil.rmtree(path, ignore_errors=True)
    t = time.perf_counter()
    ragkit.build_index(sources, path, options=ragkit.BuildOptions(language_vectors=language_vectors))
    return round(time.perf_counter() - t, 1)


def _evaluate(idx: ragkit.Index, data: ragkit.BeirDataset, mode: str) -> dict:
    """The metrics, and the mean milliseconds a query took (model loads included)."""
    t = time.perf_counter()
    out = ragkit.evaluate(idx, data, mode=mode).to_dict()
    out["ms_per_query"] = round(1000 * (time.perf_counter() - t) / out["queries"], 2)
    return out


def main() -> None:
    english = ragkit.load_beir(DATA / "xquad" / "en")
    russian = ragkit.load_beir(DATA / "news-ru" / "ng-title2doc")
    out: dict = {"environment": environment()}
    for label, on in (("one model", False), ("language vectors", True)):
        path = ROOT / "benchmarks" / ".cache" / f"mixed-ng-xquad-en-{'two' if on else 'one'}"
        row: dict = {"build_seconds": _build(path, [russian.corpus, english.corpus], on)}
        with ragkit.Index.open(path) as idx:
            row["model"] = idx.manifest["model"]["name"]
            row["documents"] = idx.manifest["counts"]["documents"]
            row["passages"] = idx.manifest["counts"]["passages"]
            row["language_vectors"] = [{k: e[k] for k in ("language", "documents", "passages", "factory")}
                                       | {"model": e["model"]["name"]}
                                       for e in (idx.manifest.get("language_vectors") or {}).get("indexes") or []]
            for mode in ("lexical", "dense", "hybrid"):
                row[f"xquad/en {mode}"] = _evaluate(idx, english, mode)
            for mode in ("lexical", "hybrid"):
                row[f"ng-title2doc {mode}"] = _evaluate(idx, russian, mode)
        out[label] = row
    own = json.loads((RESULTS / "quality.json").read_text())["sets"]
    out["xquad/en alone, MiniLM hybrid"] = own["xquad/en"]["modes"]["hybrid"]
    out["ng-title2doc alone, hybrid"] = own["news-ru/ng-title2doc"]["modes"]["hybrid"]
    (RESULTS / "mixed_language.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "environment"}, indent=1))


if __name__ == "__main__":
    main()
