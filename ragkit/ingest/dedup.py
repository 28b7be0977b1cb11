"""Reprints: groups of documents with the same or nearly the same text, found at index time.

Two passes over each document's body (its title when the body is empty):

1. **Exact**: a SHA-1 of the normalised text (casefolded, ``ё`` -> ``е``, only the runs of
   letters and digits, joined by single spaces). Reprints that differ in spacing, case or
   punctuation hash alike.
2. **Near**: datasketch's MinHash (128 permutations, fixed seed) of the text's word 3-shingles,
   queried in a MinHash LSH index at Jaccard 0.7; each candidate pair is then confirmed by the
   exact Jaccard similarity of the two shingle sets (>= 0.7), so LSH only prunes and never adds
   a false pair. Measured in benchmarks/dedup_bench.py: 5-shingles at 0.8 found 2 of 300 copies
   with 3% of the words replaced and a sentence dropped, 3-shingles at 0.5 found 299; 0.7 is
   the margin kept below the 0.81 that the least similar true reprint pair of NG reaches.
   Templated texts that differ in one number per sentence can reach 0.87 and are grouped:
   ``collapse=False`` keeps them apart at search time. Texts shorter than 8 words are left to the exact pass (a shingle set that small
   says little: two short notices can share most of it by chance).

Pairs join into groups by union-find. A group lists document rows best-known first (corpus
order); search shows the first member of a group that ranks and folds the rest into its
``duplicates``. The groups live in a small JSON file of the index generation
(:func:`write_groups`, :func:`read_groups`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import IndexFormatError, RagkitError

__all__ = ["DuplicateGroups", "find_duplicates", "normalised", "read_groups", "write_groups"]

FORMAT = "ragkit-duplicates"
FORMAT_VERSION = 1
THRESHOLD = 0.7
SHINGLE = 3
NUM_PERM = 128
SEED = 1
MIN_WORDS = 8
_WORD = re.compile(r"[^\W_]+")


def normalised(text: str) -> list[str]:
    """The words of ``text``: casefolded runs of letters and digits, ``ё`` read as ``е``."""
    return _WORD.findall(text.casefold().replace("ё", "е"))


def _shingles(words: list[str]) -> set[str]:
    return {" ".join(words[i : i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(texts: Sequence[str], *, near: bool = True, threshold: float = THRESHOLD) -> list[list[int]]:
    """Groups (two or more positions into ``texts``, ascending) of exact and near duplicates."""
    words = [normalised(t) for t in texts]
    uf = _UnionFind(len(texts))
    first: dict[bytes, int] = {}
    for i, w in enumerate(words):
        if not w:
            continue
        key = hashlib.sha1(" ".join(w).encode("utf-8")).digest()
        uf.union(first.setdefault(key, i), i)
    if near:
        _near_pairs(words, uf, threshold)
    groups: dict[int, list[int]] = {}
    for i in range(len(texts)):
        groups.setdefault(uf.find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def _near_pairs(words: list[list[str]], uf: _UnionFind, threshold: float) -> None:
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError as exc:  # a core dependency; a broken install says so in one line
        raise RagkitError("near-duplicate detection needs datasketch: pip install 'datasketch>=1.6'") from exc

    # One representative per exact group: its copies are joined already.
    reps = [i for i, w in enumerate(words) if len(w) >= MIN_WORDS and uf.find(i) == i]
    shingles = {i: _shingles(words[i]) for i in reps}
    hashes = MinHash.bulk([[s.encode("utf-8") for s in shingles[i]] for i in reps], num_perm=NUM_PERM, seed=SEED)
    if not reps:
        return
    # datasketch's band layout for this threshold (b bands of r rows); its buckets are matched
    # here with one sort per band instead of a Python dict insert and query per document (25 of
    # 65 s at 100k documents): the candidate pairs, and so the groups, are the same.
    bands = MinHashLSH(threshold=threshold, num_perm=NUM_PERM).hashranges
    signatures = np.vstack([h.hashvalues for h in hashes])
    rows = np.asarray(reps)
    checked: set[tuple[int, int]] = set()
    for start, end in bands:
        for group in _same_rows(signatures[:, start:end]):
            members = rows[group]
            for x, i in enumerate(members):
                for j in members[x + 1:]:
                    pair = (int(i), int(j))
                    if pair in checked:
                        continue
                    checked.add(pair)
                    a, b = shingles[pair[0]], shingles[pair[1]]
                    if len(a & b) >= threshold * len(a | b):
                        uf.union(*pair)


def _same_rows(band: np.ndarray) -> list[np.ndarray]:
    """Positions of the rows of ``band`` equal to another row, one ascending array per value."""
    keys = np.ascontiguousarray(band).view(np.dtype((np.void, band.dtype.itemsize * band.shape[1]))).ravel()
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    return [np.sort(order[a:b]) for a, b in zip(starts[:-1], starts[1:]) if b - a > 1]


@dataclass(frozen=True)
class DuplicateGroups:
    """Duplicate groups of an index: each a list of (document row, document id, source)."""

    groups: list[list[tuple[int, str, str]]]

    def group_of(self) -> dict[int, int]:
        """Document row -> the position of its group."""
        return {row: g for g, members in enumerate(self.groups) for row, _, _ in members}

    def __len__(self) -> int:
        return len(self.groups)


def write_groups(path: Path, groups: DuplicateGroups, settings: dict[str, Any]) -> None:
    """Write the groups as JSON beside the other files of a generation (atomic)."""
    from ragkit.format.manifest import write_atomic

    body = {"format": FORMAT, "format_version": FORMAT_VERSION, **settings,
            "groups": [[[row, doc_id, source] for row, doc_id, source in g] for g in groups.groups]}
    write_atomic(path, (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8"))


def read_groups(path: Path) -> DuplicateGroups:
    from ragkit.format.manifest import read_versioned_json

    body = read_versioned_json(path, FORMAT, FORMAT_VERSION, "ragkit duplicate groups")
    try:
        groups = [[(int(row), str(doc_id), str(source)) for row, doc_id, source in g] for g in body["groups"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexFormatError(f"{path} holds malformed duplicate groups: rebuild the index") from exc
    return DuplicateGroups(groups)


def settings() -> dict[str, Any]:
    """What the detection used, recorded with the groups."""
    return {"method": "sha1-normalised+minhash-lsh", "threshold": THRESHOLD, "shingle_words": SHINGLE,
            "num_perm": NUM_PERM, "seed": SEED, "min_words": MIN_WORDS}


def write_for_build(path: Path, docs: Sequence[Any], doc_rows: Sequence[int]) -> dict[str, Any]:
    """Find the duplicate groups of a build's documents, write them to ``path`` and return the
    manifest entry (``{"file": ..., "groups": n, "documents": n, ...settings}``).

    ``docs`` are :class:`ragkit.Document` objects, ``doc_rows`` their store rows.
    """
    found = find_duplicates([d.text if d.text.strip() else (d.title or "") for d in docs])
    groups = DuplicateGroups([[(int(doc_rows[i]), docs[i].id, docs[i].source) for i in g] for g in found])
    write_groups(path, groups, settings())
    return {"file": path.name, "groups": len(groups), "documents": sum(len(g) for g in found), **settings()}
