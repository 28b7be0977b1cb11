"""Reading evaluation sets in BEIR layout: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ragkit.errors import InvalidArgumentError


@dataclass
class BeirDataset:
    root: Path
    corpus: Path
    queries: dict[str, str]          # query id -> text (only those judged in the split)
    qrels: dict[str, dict[str, int]]  # query id -> {document id: relevance}


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    root = Path(folder)
    if not root.is_dir():
        raise InvalidArgumentError(f"data set folder {root} does not exist")
    corpus = next((root / n for n in ("corpus.jsonl", "corpus.jsonl.gz") if (root / n).is_file()), None)
    if corpus is None:
        raise InvalidArgumentError(f"{root} is not a BEIR data set: no corpus.jsonl[.gz]")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise InvalidArgumentError(f"{root} has no qrels for split {split!r} (have: {', '.join(have) or 'none'})")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for i, row in enumerate(reader):
            if not row or (i == 0 and row[0] == "query-id"):
                continue
            try:
                qid, did, score = row[0], row[1], int(row[2]) if len(row) > 2 else 1
            except (IndexError, ValueError) as exc:
                raise InvalidArgumentError(f"{qrels_path}:{i + 1}: bad qrels line") from exc
            if score > 0:
                qrels.setdefault(qid, {})[did] = score
    queries: dict[str, str] = {}
    queries_path = root / "queries.jsonl"
    if not queries_path.is_file():
        raise InvalidArgumentError(f"{root} is not a BEIR data set: no queries.jsonl")
    with open(queries_path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                qid, text = str(obj["_id"]), str(obj["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InvalidArgumentError(f"{queries_path}:{i}: bad query line") from exc
            if qid in qrels and text.strip():
                queries[qid] = text
    if not queries:
        raise InvalidArgumentError(f"{root}: no query of split {split!r} has relevance judgements")
    return BeirDataset(root, corpus, queries, {q: qrels[q] for q in queries})
