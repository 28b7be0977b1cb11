"""What a mixed archive gets today: xquad/en's English paragraphs inside the Russian NG corpus.

    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/mixed_language.py

The archive is mostly Russian, so the build picks navec-ru, and English queries get no dense
signal (their dense weight is the foreign weight, 0). xquad/en's queries are evaluated against
it in lexical and hybrid mode, to set beside the English-only index with all-MiniLM-L6-v2
(benchmarks/results/quality.json). Writes benchmarks/results/mixed_language.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, ROOT, environment  # noqa: E402

import ragkit  # noqa: E402


def main() -> None:
    path = ROOT / "benchmarks" / ".cache" / "mixed-ng-xquad-en"
    english = ragkit.load_beir(DATA / "xquad" / "en")
    russian = ragkit.load_beir(DATA / "news-ru" / "ng-title2doc")
    t = time.perf_counter()
    if not (path / "manifest.json").is_file():
        ragkit.build_index([russian.corpus, english.corpus], path)
    built = round(time.perf_counter() - t, 1)
    out: dict = {"environment": environment(), "build_seconds": built}
    with ragkit.Index.open(path) as idx:
        out["model"] = idx.manifest["model"]["name"]
        out["documents"] = idx.manifest["counts"]["documents"]
        for mode in ("lexical", "hybrid"):
            out[f"xquad/en {mode}"] = ragkit.evaluate(idx, english, mode=mode).to_dict()
        out["ng-title2doc hybrid"] = ragkit.evaluate(idx, russian, mode="hybrid").to_dict()
    own = json.loads((RESULTS / "quality.json").read_text())["sets"]
    out["xquad/en alone, MiniLM hybrid"] = own["xquad/en"]["modes"]["hybrid"]
    out["ng-title2doc alone, hybrid"] = own["news-ru/ng-title2doc"]["modes"]["hybrid"]
    (RESULTS / "mixed_language.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "environment"}, indent=1))


if __name__ == "__main__":
    main()
