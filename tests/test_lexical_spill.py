"""SpilledCounts: the BM25 files of a streaming build, compared byte for byte with from_counts + save.

Everything is real: the Analyzer and count_terms on Russian and English sentences (words of the
seed article and a fixed English list), files in tmp_path. Tiny ``run_entries`` and
``block_entries`` force many runs and many column ranges; the defaults give one of each.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ragkit.errors import EmptyCorpusError, InvalidArgumentError
from ragkit.lexical.analysis import Analyzer
from ragkit.lexical.bm25 import ARRAYS, MANIFEST, VOCAB, LexicalIndex, TermCounts, count_terms
from ragkit.lexical.spill import SpilledCounts, _column_ranges

ROOT = Path(__file__).resolve().parent.parent
SEED = next((ROOT / "seeds").glob("*.txt"), None)
ENGLISH = ("river mountain forest city train harbour bridge garden castle market winter summer engineer "
           "station library museum theatre village ocean island desert valley factory school doctor").split()
FILES = [VOCAB, *(name for name, _ in ARRAYS.values()), MANIFEST]
SIZES = [1, 3, 1, 17, 40, 2, 1, 64, 9, 30]  # uneven parts, several of one row


def _words() -> list[str]:
    russian = re.findall(r"[а-яё]+", SEED.read_text(encoding="utf-8").lower()) if SEED else []
    return sorted(set(russian)) + ENGLISH


def corpus(seed: int, n_docs: int = 220) -> list[str]:
    """Seeded sentences of 0 to 25 words (Zipf-like choice, so some terms are common); a few are empty."""
    rng = np.random.default_rng(seed)
    words = _words()
    p = 1.0 / np.arange(1, len(words) + 1)
    p = p[rng.permutation(len(words))] / p.sum()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(0, 26)), p=p)) for _ in range(n_docs)]
    texts[5:8] = ["", "!!! ...", "и в на"]  # rows without terms, in one part of their own below
    return texts


def parts_of(texts: list[str], analyzer: Analyzer) -> list[TermCounts]:
    cuts, at, i = [], 0, 0
    for bound in (5, 8):  # the term-less rows 5..7 form a part
        cuts.append((at, bound))
        at = bound
    while at < len(texts):
        size = SIZES[i % len(SIZES)]
        cuts.append((at, min(at + size, len(texts))))
        at, i = at + size, i + 1
    return [count_terms(analyzer, texts[lo:hi]) for lo, hi in cuts]


def ids_for(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n).astype(np.int64) * 3 + 1_000_003


def spilled(tmp_path: Path, parts: list[TermCounts], run_entries: int = 1 << 24) -> SpilledCounts:
    counts = SpilledCounts(tmp_path / "scratch", run_entries=run_entries)
    for part in parts:
        counts.add(part)
    return counts


def assert_same_files(a: Path, b: Path) -> None:
    assert sorted(p.name for p in a.iterdir()) == sorted(FILES)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("run_entries, block_entries", [(7, 7), (7, 50), (50, 1000), (1000, 50), (None, None)])
def test_files_equal_from_counts_save(tmp_path: Path, seed: int, run_entries: int | None,
                                      block_entries: int | None) -> None:
    analyzer = Analyzer()
    parts = parts_of(corpus(seed), analyzer)
    ids = ids_for(sum(p.n_rows for p in parts), seed)
    reference = LexicalIndex.from_counts(ids, parts, analyzer)
    reference.save(tmp_path / "b")
    kwargs = {} if block_entries is None else {"block_entries": block_entries}
    with spilled(tmp_path, parts, **({} if run_entries is None else {"run_entries": run_entries})) as counts:
        assert (counts.n_rows, counts.n_terms) == (len(ids), reference.config()["n_terms"])
        config = counts.write(tmp_path / "a", ids, analyzer, **kwargs)
    assert config == reference.config()
    assert_same_files(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
@pytest.mark.parametrize("k1, b", [(1.5, 0.75), (0.9, 0.3), (0.0, 1.0), (2.0, 0.0)])
def test_every_method_and_parameters(tmp_path: Path, method: str, k1: float, b: float) -> None:
    analyzer = Analyzer(stopwords=False)
    parts = parts_of(corpus(7, n_docs=150), analyzer)
    ids = ids_for(sum(p.n_rows for p in parts), 7)
    reference = LexicalIndex.from_counts(ids, parts, analyzer, k1=k1, b=b, method=method)
    reference.save(tmp_path / "b")
    with spilled(tmp_path, parts, run_entries=31) as counts:
        config = counts.write(tmp_path / "a", ids, analyzer, k1=k1, b=b, method=method, block_entries=40)
    assert config == reference.config()
    assert_same_files(tmp_path / "a", tmp_path / "b")


def test_hand_made_parts_with_unused_terms_and_no_entries(tmp_path: Path) -> None:
    """A part may list a term it never counts (df 0), and a corpus may have no entries at all."""
    p1 = TermCounts(["a", "ghost", "b"], np.array([0, 0, 2]), np.array([0, 1, 1]), np.array([2, 1, 5]), 2)
    p2 = TermCounts(["b", "c"], np.array([0, 1, 1]), np.array([0, 0, 2]), np.array([1, 1, 3]), 3)
    empty = TermCounts([], np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32), 4)
    for name, parts in {"mixed": [p1, empty, p2], "nothing": [empty, empty]}.items():
        ids = ids_for(sum(p.n_rows for p in parts), 3)
        LexicalIndex.from_counts(ids, parts).save(tmp_path / name / "b")
        with spilled(tmp_path / name, parts, run_entries=2) as counts:
            counts.write(tmp_path / name / "a", ids, block_entries=1)
        assert_same_files(tmp_path / name / "a", tmp_path / name / "b")


def test_written_folder_loads_and_searches_like_the_index(tmp_path: Path) -> None:
    analyzer = Analyzer()
    texts = corpus(11)
    parts = parts_of(texts, analyzer)
    ids = ids_for(len(texts), 11)
    memory = LexicalIndex.from_counts(ids, parts, analyzer)
    with spilled(tmp_path, parts, run_entries=64) as counts:
        counts.write(tmp_path / "a", ids, analyzer, block_entries=100)
    loaded = LexicalIndex.load(tmp_path / "a")
    words = _words()
    queries = [texts[0], texts[100], " ".join(words[:3]), " ".join(words[-4:]), "zzz unknown"]
    for query in queries:
        got, want = loaded.search(query, 10), memory.search(query, 10)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert loaded.search(texts[100], 1)[0][0] == ids[100]


def test_runs_spill_and_close_removes_them(tmp_path: Path) -> None:
    analyzer = Analyzer()
    parts = parts_of(corpus(5), analyzer)
    counts = spilled(tmp_path, parts, run_entries=40)
    runs = list((tmp_path / "scratch").rglob("run-*"))
    assert len(runs) >= 3 * 8  # three files a run, many runs
    counts.write(tmp_path / "a", ids_for(counts.n_rows, 5), analyzer)
    counts.close()
    assert (tmp_path / "scratch").is_dir() and not any((tmp_path / "scratch").rglob("*"))
    with pytest.raises(InvalidArgumentError):
        counts.add(parts[0])
    with SpilledCounts(tmp_path / "other", run_entries=1) as other:
        other.add(parts[-1])
        assert any((tmp_path / "other").rglob("run-*"))
    assert not any((tmp_path / "other").rglob("*"))


def test_out_of_order_entries_are_refused(tmp_path: Path) -> None:
    good = TermCounts(["a", "b"], np.array([0, 0, 1]), np.array([0, 2, 1]), np.array([1, 1, 1]), 3)
    swapped = TermCounts(["a", "b"], np.array([0, 0, 1]), np.array([2, 0, 1]), np.array([1, 1, 1]), 3)
    twice = TermCounts(["a", "b"], np.array([0, 0, 1]), np.array([0, 0, 1]), np.array([1, 1, 1]), 3)
    by_row = TermCounts(["a", "b"], np.array([0, 1, 0]), np.array([0, 1, 2]), np.array([1, 1, 1]), 3)
    outside = TermCounts(["a", "b"], np.array([0, 0, 1]), np.array([0, 2, 3]), np.array([1, 1, 1]), 3)
    with SpilledCounts(tmp_path / "s") as counts:
        counts.add(good)
        for bad in (swapped, twice, by_row):
            with pytest.raises(InvalidArgumentError):
                LexicalIndex.from_counts(np.arange(6), [good, bad])
            with pytest.raises(InvalidArgumentError):
                counts.add(bad)
        with pytest.raises(InvalidArgumentError):  # a row past the part's n_rows
            counts.add(outside)
        with pytest.raises(InvalidArgumentError):
            counts.add(TermCounts(["a", "a"], np.array([0, 1]), np.array([0, 1]), np.array([1, 1]), 2))
        assert (counts.n_rows, counts.n_terms) == (3, 2)  # a refused part changes nothing


def test_bad_ids_parameters_and_empty_are_refused_as_from_counts(tmp_path: Path) -> None:
    part = TermCounts(["a", "b"], np.array([0, 0, 1]), np.array([0, 2, 1]), np.array([1, 1, 1]), 3)
    bad_ids = [np.arange(2), np.arange(4), np.array([1, 1, 2]), np.arange(3.0), np.arange(3).reshape(3, 1)]
    with SpilledCounts(tmp_path / "s") as counts:
        counts.add(part)
        for ids in bad_ids:
            with pytest.raises(InvalidArgumentError):
                LexicalIndex.from_counts(ids, [part])
            with pytest.raises(InvalidArgumentError):
                counts.write(tmp_path / "a", ids)
        for kwargs in ({"method": "okapi"}, {"k1": -1.0}, {"b": 1.5}, {"b": -0.1}, {"block_entries": 0}):
            with pytest.raises(InvalidArgumentError):
                counts.write(tmp_path / "a", np.arange(3), **kwargs)
        assert not (tmp_path / "a").exists()
    with SpilledCounts(tmp_path / "e") as empty:
        with pytest.raises(EmptyCorpusError):
            LexicalIndex.from_counts(np.zeros(0, np.int64), [])
        with pytest.raises(EmptyCorpusError):
            empty.write(tmp_path / "a", np.zeros(0, np.int64))
    with pytest.raises(InvalidArgumentError):
        SpilledCounts(tmp_path / "z", run_entries=0)


def test_column_ranges_hold_at_most_block_entries_or_one_column() -> None:
    indptr = np.cumsum([0, 3, 0, 10, 1, 1, 1, 0, 4])
    assert _column_ranges(indptr, 4) == [(0, 2), (2, 3), (3, 7), (7, 8)]
    assert _column_ranges(indptr, 100) == [(0, 8)]
    assert _column_ranges(np.zeros(1, np.int64), 5) == []
