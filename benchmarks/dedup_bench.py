"""Reprint detection (ragkit.ingest.dedup) measured on the NG articles: pairwise precision/recall.

    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/dedup_bench.py

1. Exact groups: the truth is the NG corpus's groups of byte-identical texts (712 of 1,986
   documents in groups); a detected pair is right when both texts are identical.
2. Near duplicates: 300 distinct NG articles (seeded) each get one edited copy (a sentence
   dropped, 3% of the words replaced by other corpus words, a reprint line added, and the rest
   re-spaced and re-cased); the truth is (original, copy) plus the exact groups; every other
   detected pair is a false positive. Also reported: how many copies with heavier edits
   (10% and 25% of the words replaced) are still found.

Writes benchmarks/results/dedup.json.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, environment  # noqa: E402

from ragkit.ingest.dedup import find_duplicates, settings  # noqa: E402

CORPUS = DATA / "news-ru" / "ng-title2doc" / "corpus.jsonl.gz"


def pairs(groups: list[list[int]]) -> set[tuple[int, int]]:
    return {(a, b) for g in groups for a, b in itertools.combinations(sorted(g), 2)}


def jaccard(a: str, b: str) -> float:
    from ragkit.ingest.dedup import _shingles, normalised

    x, y = _shingles(normalised(a)), _shingles(normalised(b))
    return len(x & y) / len(x | y)


def truth_groups(texts: list[str]) -> list[list[int]]:
    by_text: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        by_text.setdefault(t, []).append(i)
    return [g for g in by_text.values() if len(g) > 1]


def edit(text: str, rng: random.Random, vocabulary: list[str], share: float) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", text)
    if len(sentences) > 3:
        sentences.pop(rng.randrange(1, len(sentences)))
    words = " ".join(sentences).split()
    for i in rng.sample(range(len(words)), int(len(words) * share)):
        words[i] = rng.choice(vocabulary)
    return "Перепечатка из архива.  " + "  ".join(w.upper() if rng.random() < 0.05 else w for w in words)


def score(found: set, truth: set) -> dict:
    tp = len(found & truth)
    return {"pairs_found": len(found), "pairs_true": len(truth), "true_positives": tp,
            "precision": round(tp / len(found), 4) if found else 1.0, "recall": round(tp / len(truth), 4) if truth else 1.0}


def main() -> None:
    docs = [json.loads(line) for line in gzip.open(CORPUS, "rt", encoding="utf-8")]
    texts = [d["text"] for d in docs]
    truth = truth_groups(texts)
    out: dict = {"environment": environment(), "settings": settings(),
                 "corpus": {"documents": len(texts), "in_groups": sum(map(len, truth)), "groups": len(truth),
                            "distinct_texts": len(set(texts))}}
    t = time.perf_counter()
    found = find_duplicates(texts)
    from ragkit.ingest.dedup import normalised

    extra = sorted(pairs(found) - pairs(truth))
    same_words = sum(normalised(texts[a]) == normalised(texts[b]) for a, b in extra)
    out["exact"] = {**score(pairs(found), pairs(truth)), "seconds": round(time.perf_counter() - t, 2),
                    "documents_in_groups": sum(map(len, found)),
                    "extra_pairs_same_words": same_words, "extra_pairs_near": len(extra) - same_words,
                    "extra_pairs_same_title": sum(docs[a]["title"] == docs[b]["title"] for a, b in extra),
                    "extra_pairs_min_jaccard": round(min((jaccard(texts[a], texts[b]) for a, b in extra), default=1.0), 3),
                    "extra_examples": [[docs[a]["_id"], docs[b]["_id"], len(texts[a]), len(texts[b])] for a, b in extra[:5]]}
    print("exact NG groups:", out["exact"], file=sys.stderr)

    rng = random.Random(12)
    singles = sorted({i for i in range(len(texts))} - {i for g in truth for i in g})
    vocabulary = sorted({w for t in texts[:300] for w in t.split() if len(w) > 3})
    picked = rng.sample(singles, 300)
    for share in (0.03, 0.10, 0.25):
        extra = [edit(texts[i], rng, vocabulary, share) for i in picked]
        all_texts = texts + extra
        near_truth = pairs(truth) | {(i, len(texts) + j) for j, i in enumerate(picked)}
        t = time.perf_counter()
        detected = pairs(find_duplicates(all_texts))
        entry = {**score(detected, near_truth), "seconds": round(time.perf_counter() - t, 2),
                 "copies_found": sum((i, len(texts) + j) in detected for j, i in enumerate(picked)), "copies": len(picked)}
        out[f"near_{int(share * 100)}pct_words_replaced"] = entry
        print(f"near duplicates, {share:.0%} of words replaced:", entry, file=sys.stderr)
    (RESULTS / "dedup.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
