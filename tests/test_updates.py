"""The embedding cache, incremental add/remove, and the one-writer lock (deterministic fake embedder)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ragkit import Document, Index, build_index
from ragkit.builder import update_index, writer_lock
from ragkit.cli import app
from ragkit.errors import EmptyCorpusError, IndexLockedError, InvalidArgumentError

runner = CliRunner()
DOCS = [Document(f"d{i}", f"Document {i} is about topic{i} and shared words.", source=f"/src/{'a' if i < 3 else 'b'}/{i}.txt")
        for i in range(6)]


class CountingFake:
    """Wraps the deterministic fake embedder and counts the passages it embeds."""

    def __init__(self, fake):
        self.fake = fake
        self.embedded = 0
        for name in ("name", "max_tokens", "query_prompt", "passage_prompt", "dimension"):
            setattr(self, name, getattr(fake, name))

    def token_counter(self):
        return self.fake.token_counter()

    def embed_passages(self, passages, progress=None):
        self.embedded += len(passages)
        return self.fake.embed_passages(passages, progress)

    def embed_queries(self, queries):
        return self.fake.embed_queries(queries)

    def describe(self):
        return self.fake.describe()


def test_rebuild_of_unchanged_corpus_embeds_nothing(tmp_path, fake_embedder):
    emb = CountingFake(fake_embedder)
    first = build_index(DOCS, tmp_path, embedder=emb)
    assert first.embedded == 6 and emb.embedded == 6
    again = build_index(DOCS, tmp_path, embedder=emb)
    assert again.embedded == 0 and emb.embedded == 6
    changed = [*DOCS[:5], Document("d5", "Completely new text for document five.")]
    assert build_index(changed, tmp_path, embedder=emb).embedded == 1


def test_cache_vectors_equal_fresh_vectors(tmp_path, fake_embedder):
    build_index(DOCS, tmp_path / "a", embedder=fake_embedder)
    build_index(DOCS, tmp_path / "a", embedder=fake_embedder)  # every vector from the cache
    build_index(DOCS, tmp_path / "b", embedder=fake_embedder)
    for q in ("topic3", "shared words"):
        a = Index.open(tmp_path / "a", embedder=fake_embedder).search(q, k=6, mode="dense", per_doc=None)
        b = Index.open(tmp_path / "b", embedder=fake_embedder).search(q, k=6, mode="dense", per_doc=None)
        assert [(r.doc_id, round(r.score, 6)) for r in a] == [(r.doc_id, round(r.score, 6)) for r in b]


def test_add_upserts_and_remove_by_id_and_source(tmp_path, fake_embedder):
    emb = CountingFake(fake_embedder)
    build_index(DOCS, tmp_path, embedder=emb)
    res = update_index(tmp_path, add=[Document("d1", "Document one rewritten about volcanoes."),
                                      Document("d9", "A brand new document about glaciers.")], embedder=emb)
    assert (res.documents, res.added, res.removed, res.embedded) == (7, 2, 1, 2)
    idx = Index.open(tmp_path, embedder=fake_embedder)
    assert idx.search("volcanoes", k=1, mode="lexical")[0].doc_id == "d1"
    assert idx.search("topic1", k=5, mode="lexical") == []  # the old text of d1 is gone
    assert idx.manifest["counts"] == {"documents": 7, "passages": 7}

    res = update_index(tmp_path, remove=["d0"], remove_source="/src/b/*", embedder=emb)
    assert res.documents == 3 and res.embedded == 0
    ids = {d.id for d in Index.open(tmp_path, embedder=fake_embedder).store.documents()}
    assert ids == {"d1", "d2", "d9"}
    with pytest.raises(InvalidArgumentError, match="no document"):
        update_index(tmp_path, remove=["nope"], embedder=emb)
    with pytest.raises(EmptyCorpusError):
        update_index(tmp_path, remove=["d1", "d2", "d9"], embedder=emb)
    assert len(Index.open(tmp_path, embedder=fake_embedder)) == 3  # a refused update changes nothing


def test_second_writer_fails_with_no_wait(tmp_path, fake_embedder):
    build_index(DOCS, tmp_path, embedder=fake_embedder)
    with writer_lock(tmp_path):
        with pytest.raises(IndexLockedError, match="another ragkit process"):
            build_index(DOCS, tmp_path, embedder=fake_embedder, wait=False)
        # readers are never blocked by a writer
        assert Index.open(tmp_path, embedder=fake_embedder).search("topic2", k=1, mode="lexical")[0].doc_id == "d2"


def test_cli_add_remove(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Solar panels make electricity.", encoding="utf-8")
    idx = str(tmp_path / "idx")
    assert runner.invoke(app, ["index", str(corpus), "--index", idx, "-q"]).exit_code == 0
    extra = tmp_path / "b.jsonl"
    extra.write_text(json.dumps({"id": "w", "text": "Wind turbines make electricity too."}) + "\n", encoding="utf-8")
    res = runner.invoke(app, ["add", str(extra), "--index", idx, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["documents"], out["embedded"], out["added"]) == (2, 1, 1)
    res = runner.invoke(app, ["remove", "a.txt", "--index", idx, "--json"])
    assert json.loads(res.stdout)["documents"] == 1
    bad = runner.invoke(app, ["remove", "--index", idx])
    assert bad.exit_code == 1 and "document ids or --source" in bad.stderr


def test_index_of_unchanged_files_writes_nothing(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Solar panels make electricity.", encoding="utf-8")
    first = build_index([corpus], tmp_path / "idx", embedder=fake_embedder)
    manifest = (tmp_path / "idx" / "manifest.json").read_text()
    again = build_index([corpus], tmp_path / "idx", embedder=fake_embedder)
    assert again.unchanged and not first.unchanged and again.passages == first.passages
    assert (tmp_path / "idx" / "manifest.json").read_text() == manifest
    (corpus / "a.txt").write_text("Wind turbines make electricity.", encoding="utf-8")
    changed = build_index([corpus], tmp_path / "idx", embedder=fake_embedder)
    assert not changed.unchanged and changed.embedded == 1
    forced = build_index([corpus], tmp_path / "idx", embedder=fake_embedder, force=True)
    assert not forced.unchanged and forced.embedded == 0


def test_a_single_path_is_one_source(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Solar panels make electricity.", encoding="utf-8")
    assert build_index(str(corpus), tmp_path / "idx", embedder=fake_embedder).documents == 1
    extra = tmp_path / "b.txt"
    extra.write_text("Wind turbines too.", encoding="utf-8")
    assert update_index(tmp_path / "idx", add=extra, embedder=fake_embedder).documents == 2
