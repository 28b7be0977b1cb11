"""Reprints: groups of documents with the same or nearly the same text, found at index time.

Two passes over each document's body (its title when the body is empty):

1. **Exact**: a SHA-1 of the normalised text (casefolded, ``ё`` -> ``е``, only the runs of
   letters and digits, joined by single spaces). Reprints that differ in spacing, case or
   punctuation hash alike.
2. **Near**: datasketch's MinHash (128 permutations, fixed seed) of the text's word 3-shingles,
   banded as datasketch's MinHash LSH does at Jaccard 0.7; each candidate pair is then confirmed by the
   exact Jaccard similarity of the two shingle sets (>= 0.7), so LSH only prunes and never adds
   a false pair. Measured in benchmarks/dedup_bench.py: 5-shingles at 0.8 found 2 of 300 copies
   with 3% of the words replaced and a sentence dropped, 3-shingles at 0.5 found 299; 0.7 is
   the margin kept below the 0.81 that the least similar true reprint pair of NG reaches.
   Templated texts that differ in one number per sentence can reach 0.87 and are grouped:
   ``collapse=False`` keeps them apart at search time. Texts shorter than 8 words are left to the exact pass (a shingle set that small
   says little: two short notices can share most of it by chance).

What each document needs is kept in the store (:func:`document_keys`: its exact key, word
count and one key per LSH band; and the confirmed near pairs), so an update hashes and checks
only what it adds, and a build holds one block of shingle sets at a time.

Pairs join into groups by union-find. A group lists document rows best-known first (corpus
order); search shows the first member of a group that ranks and folds the rest into its
``duplicates``. The groups live in a small JSON file of the index generation
(:func:`write_groups`, :func:`read_groups`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
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
    """Union-find over 0..n-1 that stores only the elements joined (a few among millions)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self, n: int) -> np.ndarray:
        """The root of each of 0..n-1."""
        out = np.arange(n, dtype=np.int64)
        for x in list(self.parent):
            out[x] = self.find(x)
        return out


def find_duplicates(texts: Sequence[str], *, near: bool = True, threshold: float = THRESHOLD) -> list[list[int]]:
    """Groups (two or more positions into ``texts``, ascending) of exact and near duplicates."""
    return groups_of(document_keys(texts, near=near, threshold=threshold), texts, threshold=threshold)[0]


def document_keys(texts: Sequence[str], *, near: bool = True, threshold: float = THRESHOLD) -> np.ndarray:
    """What detection needs of each text, kept with the index so that an update works only on
    what it adds: ``(len(texts), 3 + bands)`` uint64 rows of the 128-bit SHA-1 head of the
    normalised text (0, 0 for an empty one), its word count, and one 64-bit key per MinHash LSH
    band (0 where the text is too short for the near pass, or ``near`` is off).

    Computed a block of texts at a time: the shingle sets of a whole corpus are never held at
    once (blocks of 4,096 news articles took 700 MB; blocks of 256 take 90 MB, no slower).
    """
    bands = _bands(threshold)
    out = np.zeros((len(texts), 3 + len(bands)), dtype=np.uint64)
    for lo in range(0, len(texts), _BLOCK):
        words = [normalised(t) for t in texts[lo : lo + _BLOCK]]
        for i, w in enumerate(words):
            if w:
                digest = hashlib.sha1(" ".join(w).encode("utf-8")).digest()
                out[lo + i, :3] = (int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little"), len(w))
        long = [i for i, w in enumerate(words) if len(w) >= MIN_WORDS]
        if near and long:
            out[[lo + i for i in long], 3:] = _band_keys(_signatures([words[i] for i in long]), bands)
    return out


_BLOCK = 256
_MIX = np.random.default_rng(SEED).integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)


def _bands(threshold: float) -> list[tuple[int, int]]:
    try:
        from datasketch import MinHashLSH
    except ImportError as exc:  # a core dependency; a broken install says so in one line
        raise RagkitError("near-duplicate detection needs datasketch: pip install 'datasketch>=1.6'") from exc
    return list(MinHashLSH(threshold=threshold, num_perm=NUM_PERM).hashranges)


def _signatures(words: list[list[str]]) -> np.ndarray:
    from datasketch import MinHash

    hashes = MinHash.bulk([[s.encode("utf-8") for s in _shingles(w)] for w in words], num_perm=NUM_PERM, seed=SEED)
    return np.vstack([h.hashvalues for h in hashes]).astype(np.uint64)


def _band_keys(signatures: np.ndarray, bands: list[tuple[int, int]]) -> np.ndarray:
    """One 64-bit key per band: equal bands give equal keys, so LSH finds every pair it would
    find on the band values themselves (a rare extra candidate is then refused by Jaccard)."""
    with np.errstate(over="ignore"):
        mixed = signatures * _MIX[: signatures.shape[1]]  # wraps modulo 2^64 on purpose
        keys = np.stack([np.bitwise_xor.reduce(mixed[:, s:e] ^ (mixed[:, s:e] >> np.uint64(29)), axis=1)
                         + np.uint64(b) for b, (s, e) in enumerate(bands)], axis=1)
    return keys | np.uint64(1)  # never 0: 0 marks a text the near pass leaves out


def groups_of(keys: np.ndarray, texts: Sequence[str], *, threshold: float = THRESHOLD,
              known: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[list[list[int]], np.ndarray]:
    """The duplicate groups of the texts whose :func:`document_keys` are ``keys``, and the near
    pairs confirmed, as ``(n, 4)`` uint64 rows of the two texts' exact keys (kept with the index).

    ``known``: ``(old, pairs)`` of an update, where ``old[i]`` says that text ``i`` was in the
    current generation and ``pairs`` are that generation's confirmed pairs. Pairs of two old
    texts were decided then and are taken over (a pair's verdict depends on its two texts only),
    so only pairs with a new text are checked: the groups of a full pass, at the cost of what
    was added.
    """
    rows = np.flatnonzero(keys[:, 2] > 0)
    classes, first, inverse = np.unique(_exact(keys[rows]), return_index=True, return_inverse=True)
    rep = rows[first]  # the first text of each exact class
    uf = _UnionFind()
    old = np.zeros(len(classes), dtype=bool)
    taken = np.zeros((0, 4), dtype=np.uint64)
    if known is not None:
        old[inverse[known[0][rows]]] = True
        a, b = _class_of(classes, known[1][:, :2]), _class_of(classes, known[1][:, 2:])
        both = (a >= 0) & (b >= 0)
        for x, y in zip(a[both], b[both]):
            uf.union(int(x), int(y))
        taken = known[1][both]
    confirmed = _near(keys, texts, rep, old, uf, threshold)
    label = uf.roots(len(classes))[inverse]  # each text's group, as the root of its exact class
    shared = np.bincount(label, minlength=len(classes))[label] > 1
    members, label = rows[shared], label[shared]
    order = np.argsort(label, kind="stable")  # rows ascend within a group
    cuts = np.flatnonzero(np.diff(label[order])) + 1
    groups = sorted((g.tolist() for g in np.split(members[order], cuts) if g.size), key=lambda g: g[0])
    found = np.array([[*keys[rep[x], :2], *keys[rep[y], :2]] for x, y in confirmed], dtype=np.uint64).reshape(-1, 4)
    return groups, np.vstack([taken, found])


def _exact(keys: np.ndarray) -> np.ndarray:
    """The 128-bit exact keys of ``keys`` rows as one comparable value each."""
    return np.ascontiguousarray(keys[:, :2]).view(np.dtype((np.void, 16))).ravel()


def _class_of(classes: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """The position in ``classes`` (sorted) of each exact key, or -1 where it is not there."""
    if not len(classes):
        return np.full(len(exact), -1, dtype=np.int64)
    wanted = _exact(exact)
    at = np.minimum(np.searchsorted(classes, wanted), len(classes) - 1)
    return np.where(classes[at] == wanted, at, -1)


def _near(keys: np.ndarray, texts: Sequence[str], rep: np.ndarray, old: np.ndarray, uf: _UnionFind,
          threshold: float) -> list[tuple[int, int]]:
    """Join the exact classes whose representatives share an LSH band and pass the exact
    Jaccard check, skipping pairs of two old classes; returns the pairs it confirmed."""
    long = np.flatnonzero(keys[rep, 3] > 0)
    shingles: dict[int, set[str]] = {}

    def of(c: int) -> set[str]:
        if c not in shingles:
            shingles[c] = _shingles(normalised(texts[rep[c]]))
        return shingles[c]

    checked: set[tuple[int, int]] = set()
    confirmed: list[tuple[int, int]] = []
    for column in range(3, keys.shape[1]):
        for group in _same_rows(keys[rep[long], column]):
            members = long[group]
            for x, i in enumerate(members):
                for j in members[x + 1 :]:
                    pair = (int(i), int(j))
                    if (old[i] and old[j]) or pair in checked:
                        continue
                    checked.add(pair)
                    a, b = of(pair[0]), of(pair[1])
                    if len(a & b) >= threshold * len(a | b):
                        uf.union(*pair)
                        confirmed.append(pair)
    return confirmed


def _same_rows(keys: np.ndarray) -> list[np.ndarray]:
    """Positions of the values of ``keys`` equal to another one, one ascending array per value."""
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    wide = np.flatnonzero(np.diff(starts) > 1)
    return [np.sort(order[starts[w]:starts[w + 1]]) for w in wide]


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


KEYS, PAIRS = "dedup_keys", "dedup_pairs"  # their names among the store's arrays


def known_keys(store: Any, entry: object, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """The current generation's keys of the document rows ``rows`` (the documents an update
    keeps) and its confirmed pairs, or None where it has none to take over (an index written
    before they were kept, or with other detection settings)."""
    entry = entry if isinstance(entry, dict) else {}
    if any(entry.get(k) != v for k, v in settings().items()):
        return None
    keys = store.array(KEYS, "<u8", 3 + len(_bands(THRESHOLD)), store.counts()["documents"])
    pairs = store.array(PAIRS, "<u8", 4)
    if keys is None or pairs is None:
        return None
    at = np.asarray(rows, dtype=np.int64) - 1  # document rows run from 1
    if at.size and (int(at.min()) < 0 or int(at.max()) >= len(keys)):
        raise IndexFormatError(f"passage store {store.path} is damaged: document rows beyond its {KEYS} array")
    return keys[at], pairs


def write_for_build(path: Path, docs: Sequence[Any], doc_rows: Sequence[int], store: Any,
                    known: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Find the duplicate groups of a build's documents, write them to ``path``, keep their keys
    in ``store`` and return the manifest entry (``{"file": ..., "groups": n, ...settings}``).

    ``docs`` are :class:`ragkit.Document` objects, ``doc_rows`` their store rows; ``known``
    (:func:`known_keys`): the keys of the first ``len(known[0])`` documents, which an update
    keeps, and the current pairs. Then only the other documents are hashed and checked.
    """
    texts = [body(d) for d in docs]
    keys = document_keys(texts) if known is None else np.vstack([known[0], document_keys(texts[len(known[0]):])])
    return write_for_keys(path, keys, texts, lambda i: (int(doc_rows[i]), docs[i].id, docs[i].source), store,
                          None if known is None else (np.arange(len(texts)) < len(known[0]), known[1]))


def body(doc: Any) -> str:  # noqa: ANN401 - a Document
    """What detection reads of a document: its text, or its title when the text is blank."""
    return doc.text if doc.text.strip() else (doc.title or "")


def write_for_keys(path: Path, keys: np.ndarray, texts: Sequence[str],
                   member: Callable[[int], tuple[int, str, str]], store: Any,
                   known: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """:func:`write_for_build` from the documents' :func:`document_keys` (``keys``, computed
    elsewhere: a build's workers hash their documents). ``texts[i]`` (what :func:`body` gives)
    is read only for the candidate pairs to confirm; ``member(i)`` is document ``i``'s (store
    row, id, source), asked for the members of groups only; ``known`` as :func:`groups_of`'s."""
    found, pairs = groups_of(keys, texts, known=known)
    store.put_array(KEYS, keys)
    store.put_array(PAIRS, pairs)
    groups = DuplicateGroups([[member(i) for i in g] for g in found])
    write_groups(path, groups, settings())
    return {"file": path.name, "groups": len(groups), "documents": sum(len(g) for g in found), **settings()}
