"""A build streams its corpus in units (ragkit.build.stream): the units never change the index.

Real navec-ru (static, so vectors are bit-exact), real files, real FAISS. The same corpus built
in one unit and in units of a few hundred bytes (files cut in line ranges, duplicate ids across
units, a skipped line, a gzip file) gives the same store rows, BM25 files byte for byte, reprint
groups and vectors; and those equal what the stage functions give over the whole corpus at once.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from conftest import SEEDS

from ragkit import BuildOptions, Document, Index, build_index
from ragkit.build.executor import LocalExecutor
from ragkit.errors import EmptyCorpusError, InvalidArgumentError
from ragkit.format.manifest import read_manifest

MODEL = "navec-ru"


class TinyUnits(LocalExecutor):
    """The local executor with units of a few hundred bytes (or 3 documents), shrinking to 64 bytes."""

    def __init__(self, largest: int = 700) -> None:
        self.largest = largest
        self.units: list[int] = []

    def unit_sizes(self) -> dict[str, int]:
        return {"largest": self.largest, "files": 2, "smallest": 64, "parts": 3, "documents": 3}

    def stream(self, units, embedder, work, take):  # noqa: ANN001
        self.units.append(len(units))
        super().stream(units, embedder, work, take)


def write_corpus(folder: Path, seed: int = 0) -> Path:
    """Russian news-like documents over the seed article's words: two JSONL files (one with a
    broken line and an id seen twice, one gzip), a text file, and a reprint of one article."""
    words = re.findall(r"\w+", next(SEEDS.glob("*.txt")).read_text(encoding="utf-8"))
    rng = random.Random(seed)

    def text() -> str:
        return ". ".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize()
                         for _ in range(rng.randint(1, 12))) + "."

    folder.mkdir(parents=True, exist_ok=True)
    first = [{"id": f"a-{i}", "title": f"Новость {i}", "text": text()} for i in range(30)]
    first[7]["text"] = first[3]["text"]  # a reprint: one duplicate group
    lines = [json.dumps(r, ensure_ascii=False) for r in first]
    lines.insert(10, "{not json")
    lines.append(json.dumps({"id": "a-5", "text": "Повтор идентификатора."}, ensure_ascii=False))  # skipped: seen
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    second = [{"id": f"b-{i}", "title": "", "text": text()} for i in range(12)] + [{"id": "a-9", "text": text()}]
    (folder / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                              for r in second).encode("utf-8")))
    (folder / "c.txt").write_text("Заголовок\n\n" + text(), encoding="utf-8")
    return folder


def store_rows(root: Path) -> tuple[list, list, list]:
    manifest = read_manifest(root)
    with sqlite3.connect(root / manifest["store"]["file"]) as conn:
        return tuple(conn.execute(sql).fetchall() for sql in (  # type: ignore[return-value]
            "SELECT * FROM documents ORDER BY id", "SELECT * FROM passages ORDER BY id",
            "SELECT name, dtype, data FROM arrays ORDER BY name"))


def assert_same(a: Path, b: Path) -> None:
    ma, mb = read_manifest(a), read_manifest(b)
    for key in ("counts", "chunker", "model", "duplicates", "lexical"):
        assert ma[key] == mb[key], key
    assert {k: v for k, v in ma["vectors"].items() if k not in ("file", "tuning")} == \
        {k: v for k, v in mb["vectors"].items() if k not in ("file", "tuning")}
    assert store_rows(a) == store_rows(b)
    for key in ("dir", "documents_dir"):
        names = sorted(p.name for p in (a / ma["lexical"][key]).iterdir())
        assert names == sorted(p.name for p in (b / mb["lexical"][key]).iterdir())
        for name in names:
            assert (a / ma["lexical"][key] / name).read_bytes() == (b / mb["lexical"][key] / name).read_bytes(), name
    assert json.loads((a / ma["duplicates"]["file"]).read_text()) == json.loads((b / mb["duplicates"]["file"]).read_text())
    with Index.open(a) as x, Index.open(b) as y:
        ids = x.vectors.ids()
        assert np.array_equal(ids, y.vectors.ids())
        assert np.array_equal(x.vectors.reconstruct(ids), y.vectors.reconstruct(ids))


def test_units_do_not_change_the_index(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    whole = build_index([corpus], tmp_path / "whole", model=MODEL)
    tiny = TinyUnits()
    cut = build_index([corpus], tmp_path / "cut", model=MODEL, executor=tiny)
    assert len(tiny.units) == 1 and tiny.units[0] > 10  # one stream of many units, some of them line ranges
    assert (cut.documents, cut.passages, cut.embedded) == (whole.documents, whole.passages, whole.passages)
    assert cut.report.skipped == whole.report.skipped and len(whole.report.skipped) == 3  # bad line, ids seen
    assert whole.documents == 30 + 12 + 1  # a-5 and a-9 again are skipped, and the broken line
    assert read_manifest(tmp_path / "whole")["duplicates"]["groups"] == 1
    assert_same(tmp_path / "whole", tmp_path / "cut")


def test_a_streamed_build_equals_the_stages_over_the_whole_corpus(tmp_path):
    """The reference: every document loaded at once, cut by stages.chunk, BM25 built in memory."""
    from ragkit.build import stages
    from ragkit.encoders.embedder import Embedder
    from ragkit.ingest.loaders import load_documents
    from ragkit.lexical.bm25 import LexicalIndex
    from ragkit.progress import NoProgress

    corpus = write_corpus(tmp_path / "corpus", seed=1)
    build_index([corpus], tmp_path / "ix", model=MODEL, executor=TinyUnits(400))
    docs, _ = load_documents([corpus])
    embedder = Embedder(MODEL)
    spans, texts, prefixed, settings = stages.chunk(docs, embedder, BuildOptions(), NoProgress())
    manifest = read_manifest(tmp_path / "ix")
    assert manifest["chunker"] == settings
    documents, passages, _ = store_rows(tmp_path / "ix")
    assert [r[1] for r in documents] == [d.id for d in docs] and [bool(r[7]) for r in documents] == prefixed
    assert [(r[2], r[3]) for r in passages] == [span for s in spans for span in s]
    reference = tmp_path / "reference"
    LexicalIndex.build(np.arange(len(texts)), texts).save(reference / "p")
    LexicalIndex.build(np.arange(1, len(docs) + 1), stages.DocumentTexts(docs)).save(reference / "d")
    for key, ref in (("dir", "p"), ("documents_dir", "d")):
        for path in (reference / ref).iterdir():
            assert (tmp_path / "ix" / manifest["lexical"][key] / path.name).read_bytes() == path.read_bytes(), path
    with Index.open(tmp_path / "ix") as ix:
        np.testing.assert_array_equal(ix.vectors.reconstruct(np.arange(len(texts))), embedder.embed_passages(texts))


def test_document_objects_stream_in_units_too(tmp_path):
    docs = [Document(id=f"d{i}", text=f"Текст номер {i} о городе Москве и её жителях.", title=f"Заголовок {i}")
            for i in range(20)]
    build_index(docs, tmp_path / "whole", model=MODEL)
    tiny = TinyUnits()
    build_index(docs, tmp_path / "cut", model=MODEL, executor=tiny)
    assert tiny.units == [7]  # 3 documents a unit
    assert_same(tmp_path / "whole", tmp_path / "cut")
    with pytest.raises(InvalidArgumentError, match="duplicate document id 'd3'"):
        build_index([*docs, docs[3]], tmp_path / "dup", model=MODEL)
    assert not (tmp_path / "dup").exists()


def test_a_piece_a_worker_cannot_see_is_read_and_done_by_the_driver(tmp_path, monkeypatch):
    """A worker answers None for a file its machine does not see; the driver reads the piece and
    redoes the unit's work itself: the index is the same."""
    import os

    from ragkit.build import batches

    corpus = write_corpus(tmp_path / "corpus", seed=2)
    build_index([corpus], tmp_path / "whole", model=MODEL)
    hidden = str(corpus / "a.jsonl")
    seen = os.path.lexists
    monkeypatch.setattr(batches.os.path, "lexists", lambda p: p != hidden and seen(p))
    build_index([corpus], tmp_path / "cut", model=MODEL, executor=TinyUnits())
    monkeypatch.undo()
    assert_same(tmp_path / "whole", tmp_path / "cut")


def test_nothing_to_index_is_one_error_and_leaves_no_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.jsonl").write_text("{broken\n", encoding="utf-8")
    with pytest.raises(EmptyCorpusError, match="nothing to index"):
        build_index([tmp_path / "empty"], tmp_path / "ix", model=MODEL, executor=TinyUnits())
    assert not (tmp_path / "ix").exists()


def test_a_rebuild_embeds_only_what_the_cache_lacks(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", seed=3)
    first = build_index([corpus], tmp_path / "ix", model=MODEL, executor=TinyUnits())
    with open(corpus / "c.txt", "a", encoding="utf-8") as fh:
        fh.write("\n\nНовый абзац, которого не было.")
    second = build_index([corpus], tmp_path / "ix", model=MODEL, executor=TinyUnits())
    assert 0 < second.embedded < first.embedded
    assert not [p for p in (tmp_path / "ix").iterdir() if p.name.startswith(".stream-")]  # scratch removed


class HeldResults(TinyUnits):
    """TinyUnits that records, as it hands each unit's result over, how many earlier results are
    still alive (weak references; the garbage collector run first)."""

    def stream(self, units, embedder, work, take):  # noqa: ANN001
        import gc
        import weakref

        from ragkit.build.batches import run_unit

        self.alive: list[int] = []
        refs: list[weakref.ref] = []
        for i, unit in enumerate(units):
            result = run_unit(unit, embedder, work)
            gc.collect()
            self.alive.append(sum(r() is not None for r in refs))
            refs.append(weakref.ref(result))
            take(i, result)
            del result


def test_the_driver_lets_each_units_result_go_once_written(tmp_path):
    """The driver holds one unit at a time: once a unit's result is written, nothing keeps it
    (what bounds the driver's memory on a corpus of any size; benchmarks/driver_memory.py
    measures it in a memory cgroup)."""
    corpus = write_corpus(tmp_path / "corpus")
    held = HeldResults(largest=300)
    result = build_index([corpus], tmp_path / "idx", model=MODEL, executor=held)
    assert len(held.alive) > 10 and result.passages > 0
    assert held.alive == [0] * len(held.alive)
