"""The embedding cache, incremental add/remove, and the one-writer lock (deterministic fake embedder)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ragkit import Document, Index, build_index
from ragkit.build.pipeline import update_index, writer_lock
from ragkit.cli.app import app
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
    assert idx.manifest["counts"] == {"documents": 7, "passages": 7, "passage_ids": 7}  # one unused id of 8: renumbered

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
    encoder = json.loads((tmp_path / "idx" / "manifest.json").read_text())["query_encoder"]
    res = runner.invoke(app, ["remove", "a.txt", "--index", idx, "--json"])
    assert json.loads(res.stdout)["documents"] == 1
    # the ONNX query encoder is kept through updates, its checksums too
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["query_encoder"] == encoder
    assert runner.invoke(app, ["info", "--index", idx, "--verify"]).exit_code == 0
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


# ----------------------------------------------------------- updates cost what changed, and equal a build

_TOPICS = ["volcanoes erupt ash", "glaciers melt slowly", "rivers carry silt", "forests store carbon",
           "deserts bloom after rain", "oceans absorb heat", "winds shape dunes", "cities grow outward"]


def _long_doc(i: int, version: int = 0) -> Document:
    """A document long enough for several passages (the fake embedder's window is 64 tokens)."""
    sentences = [f"Sentence {j} of document {i} says that {_TOPICS[(i + j + version) % len(_TOPICS)]}."
                 for j in range(8 + i % 5)]
    return Document(f"doc{i}", " ".join(sentences), title=f"Report {i} on {_TOPICS[i % len(_TOPICS)]}",
                    source=f"/src/{'x' if i % 2 else 'y'}/{i}.txt")


QUERIES = ["volcanoes ash", "glaciers", "document 3 rivers", "carbon forests heat", "report 7", "dunes"]


def _passage_ids(root, embedder) -> dict[tuple[str, int, int], int]:
    """Each passage's id, by (document id, start, end)."""
    with Index.open(root, embedder=embedder) as idx:
        return {(p.doc_id, p.start, p.end): p.id for p in idx.store.iter_passages()}


def _snapshot(root, embedder) -> dict:
    """Everything an update must reproduce: documents, passages, BM25 scores, results. Passages
    are named by (document, span), not id: an update keeps ids that a fresh build numbers anew."""
    key = _passage_ids(root, embedder)
    name = {pid: span for span, pid in key.items()}
    with Index.open(root, embedder=embedder) as idx:
        docs = [(d.id, d.text, d.title, d.source) for d in idx.store.documents()]
        passages = sorted(key)
        lexical = {q: (sorted(zip([name[i] for i in idx.lexical.ids.tolist()], idx.lexical.score_all(q).tolist())),
                       idx.doc_lexical.ids.tolist(), idx.doc_lexical.score_all(q).tolist()) for q in QUERIES}
        results = {(q, mode): [(r.doc_id, r.start, r.end, round(r.score, 6)) for r in idx.search(q, k=8, mode=mode)]
                   for q in QUERIES for mode in ("lexical", "dense", "hybrid")}
        idx.verify()
        m = idx.manifest
        counts = {k: v for k, v in m["counts"].items() if k != "passage_ids"}
        facts = (counts, m["chunker"], {k: v for k, v in m["lexical"].items() if not k.endswith("dir")})
    return {"docs": docs, "passages": passages, "lexical": lexical, "results": results, "facts": facts}


def _rebuilt(tmp_path, root, embedder) -> dict:
    """A fresh build of the documents ``root`` holds, in its order."""
    with Index.open(root, embedder=embedder) as idx:
        docs = idx.store.documents()
    build_index(docs, tmp_path / "fresh", embedder=embedder)
    return _snapshot(tmp_path / "fresh", embedder)


def test_updated_index_equals_a_fresh_build(tmp_path, fake_embedder):
    """The DETERMINISTIC FAKE embedder; chunking, SQLite, BM25 and FAISS are real."""
    root = tmp_path / "idx"
    build_index([_long_doc(i) for i in range(30)], root, embedder=fake_embedder)
    update_index(root, add=[_long_doc(4, version=1), _long_doc(11, version=3), _long_doc(40), _long_doc(41)],
                 remove=["doc0", "doc17"], remove_source="/src/y/2*", embedder=fake_embedder)
    updated = _snapshot(root, fake_embedder)
    # 30 + 2 new - doc0, doc17 - 2, 20, 22, 24, 26, 28 (the source glob); 4 and 11 replaced (now last)
    assert len(updated["docs"]) == 24
    assert updated == _rebuilt(tmp_path, root, fake_embedder)
    counts = json.loads((root / "manifest.json").read_text())["counts"]  # 20 of 84 passages went: renumbered
    assert counts["passage_ids"] == counts["passages"] == 67 and max(_passage_ids(root, fake_embedder).values()) == 66
    update_index(root, remove=["doc40", "doc5"], embedder=fake_embedder)  # a remove after an update
    assert _snapshot(root, fake_embedder) == _rebuilt(tmp_path / "again", root, fake_embedder)


def test_kept_passages_keep_their_ids_and_the_update_equals_a_fresh_build(tmp_path, fake_embedder):
    root = tmp_path / "idx"
    build_index([_long_doc(i) for i in range(30)], root, embedder=fake_embedder)
    before = _passage_ids(root, fake_embedder)
    update_index(root, add=[_long_doc(4, version=1), _long_doc(40)], remove=["doc17"], embedder=fake_embedder)
    after = _passage_ids(root, fake_embedder)
    kept = {span for span in after if span[0] not in {"doc4", "doc40"}}
    assert len(kept) > 70 and all(after[span] == before[span] for span in kept)
    assert min(after[span] for span in set(after) - kept) == max(before.values()) + 1  # new ones: unused ids
    counts = json.loads((root / "manifest.json").read_text())["counts"]
    assert counts["passage_ids"] == max(after.values()) + 1 > counts["passages"] == len(after)
    assert _snapshot(root, fake_embedder) == _rebuilt(tmp_path, root, fake_embedder)
    update_index(root, add=[_long_doc(41)], embedder=fake_embedder)  # and again, on top of the unused ids
    again = _passage_ids(root, fake_embedder)
    assert all(again[span] == after[span] for span in after)
    assert _snapshot(root, fake_embedder) == _rebuilt(tmp_path / "again", root, fake_embedder)


def test_update_cuts_and_analyses_only_new_documents(tmp_path, fake_embedder, monkeypatch):
    from ragkit.ingest import chunking
    from ragkit.lexical import analysis

    root = tmp_path / "idx"
    emb = CountingFake(fake_embedder)
    counters = []
    emb.token_counter = lambda: counters.append(1) or fake_embedder.token_counter()
    build_index([_long_doc(i) for i in range(40)], root, embedder=emb)
    cut, analysed = [], []
    real_spans, real_terms = chunking.Chunker.spans, analysis.Analyzer.terms_batch
    monkeypatch.setattr(chunking.Chunker, "spans", lambda self, text, *a: cut.append(text) or real_spans(self, text, *a))
    monkeypatch.setattr(analysis.Analyzer, "terms_batch", lambda self, texts: analysed.append(list(texts)) or real_terms(self, texts))
    counters.clear()
    emb.embedded = 0
    res = update_index(root, add=[_long_doc(3, version=2), _long_doc(50)], remove=["doc9"], embedder=emb)
    assert (res.added, res.removed, res.documents) == (2, 2, 40)
    assert sorted(cut) == sorted([_long_doc(3, version=2).text, _long_doc(50).text])  # 38 kept: not cut again
    # passage- and document-level BM25 each analysed the two new documents' text, nothing else
    assert [len(batch) for batch in analysed] == [emb.embedded, 2]
    assert counters == [1]
    # removing documents needs neither the tokenizer nor the model
    counters.clear()
    cut.clear()
    analysed.clear()
    emb.embedded = 0
    update_index(root, remove=["doc1", "doc2"], embedder=emb)
    assert (counters, cut, emb.embedded) == ([], [], 0)
    assert all(len(batch) == 0 for batch in analysed)  # no text analysed (BM25 no longer calls with none)


def test_index_written_before_counts_and_prefix_flags_updates_correctly(tmp_path, fake_embedder):
    """Lexical folders of format 1 (no term counts) and stores without the title-prefix column:
    the first update re-analyses and counts titles, and still equals a fresh build."""
    import sqlite3

    from ragkit.format.checksums import record
    from ragkit.format.manifest import read_manifest, write_manifest

    root = tmp_path / "idx"
    build_index([_long_doc(i) for i in range(20)], root, embedder=fake_embedder)
    manifest = read_manifest(root)
    for key in ("dir", "documents_dir"):
        folder = root / manifest["lexical"][key]
        (folder / "bm25_tf.npy").unlink()
        bm25 = json.loads((folder / "bm25.json").read_text(encoding="utf-8"))
        bm25["format_version"] = 1
        del bm25["files"]["bm25_tf.npy"]
        (folder / "bm25.json").write_text(json.dumps(bm25), encoding="utf-8")
    with sqlite3.connect(root / manifest["store"]["file"]) as conn:
        conn.execute("ALTER TABLE documents DROP COLUMN title_prefix")
    manifest["files"] = record(root, [manifest["vectors"]["file"], manifest["store"]["file"],
                                      manifest["lexical"]["dir"], manifest["lexical"]["documents_dir"]])
    write_manifest(root, manifest)
    with Index.open(root, embedder=fake_embedder) as idx:
        idx.verify()
        assert not idx.lexical.has_counts
    update_index(root, add=[_long_doc(25)], remove=["doc3"], embedder=fake_embedder)
    assert _snapshot(root, fake_embedder) == _rebuilt(tmp_path, root, fake_embedder)
