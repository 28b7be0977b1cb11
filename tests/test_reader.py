"""A long-lived reader keeps answering from the generation it opened, and `reload` moves it on.

Real models: navec-ru (Russian) and the packaged all-MiniLM-L6-v2 (English, with its exported
ONNX query encoder), real FAISS, real files.
"""

from __future__ import annotations

import pytest

from ragkit import Document, Index, build_index, update_index

RU = [
    Document(id="parks", title="Парки Москвы", text="В парках Москвы высадили тысячи деревьев и кустарников этой весной."),
    Document(id="metro", title="Метро", text="Новая станция метро откроется на юге города в декабре."),
    Document(id="tech", title="Технопарки", text="Технопарки Москвы привлекли инвесторов и создали рабочие места."),
]
EN = [
    Document(id="parks", title="Parks", text="Thousands of trees were planted in the city parks this spring."),
    Document(id="metro", title="Metro", text="A new metro station opens in the south of the city in December."),
    Document(id="tech", title="Tech parks", text="Technology parks attracted investors and created new jobs."),
]
QUERIES = {"navec-ru": "технопарки инвесторы", "sentence-transformers/all-MiniLM-L6-v2": "technology parks investors"}


def _more(docs: list[Document], n: int) -> list[Document]:
    return [Document(id=f"extra-{n}-{d.id}", title=d.title, text=f"{d.text} Выпуск {n}. Issue {n}.") for d in docs]


@pytest.mark.parametrize("model,docs", [("navec-ru", RU), ("sentence-transformers/all-MiniLM-L6-v2", EN)])
def test_reader_survives_two_updates_and_reload_moves_on(tmp_path, model, docs):
    root = tmp_path / "index"
    build_index(docs, root, model=model)
    query = QUERIES[model]
    reader = Index.open(root)
    first_generation = reader.manifest["generation"]
    for n in (1, 2):
        update_index(root, add=_more(docs, n))
    for mode in ("dense", "hybrid", "lexical"):
        hits = reader.search(query, k=10, mode=mode, per_doc=None)
        assert hits, mode
        assert {h.doc_id for h in hits} <= {d.id for d in docs}, "the old reader sees only its own generation"
    assert len(reader) == len(docs)
    newest = reader.reload()
    assert newest is not reader and newest.generation == first_generation + 2
    assert newest.search(query, k=10, mode="dense", per_doc=None)
    assert len(newest.store.documents()) == 3 * len(docs)
    assert newest.reload() is newest  # already the newest generation
    reader.close()
    newest.close()


def test_reader_survives_a_rebuild_with_another_model(tmp_path):
    root = tmp_path / "index"
    build_index(EN, root)  # MiniLM, with an ONNX query encoder
    reader = Index.open(root)
    build_index(RU, root, model="navec-ru", force=True)  # deletes the MiniLM query encoder
    update_index(root, add=_more(RU, 1))
    hits = reader.search("technology parks investors", k=3, mode="dense")
    assert hits and hits[0].doc_id == "tech"
    reader.close()
