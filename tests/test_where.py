"""Metadata filters (``--where`` / ``Filters(where=...)``) through the library and the CLI.

A real index (navec-ru: the corpus is Russian) of JSONL records with extra fields; filters
are combined with ``--since`` and ``--source``; a field no document has matches nothing; a
store written before metadata existed opens and matches nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ragkit import Filters, Index, build_index
from ragkit.errors import InvalidArgumentError
from ragkit.store.sqlite import Store

RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")
TEXT = "Городские власти обсудили ремонт дорог и строительство новых школ в районе."
RECORDS = [
    {"id": "a", "date": "2024-01-10", "author": "Иванов", "site": "ng.ru", "tags": ["школы", "дороги"], "text": TEXT},
    {"id": "b", "date": "2024-03-05", "author": "Иванов", "site": "rbc.ru", "tags": ["дороги"], "text": TEXT + " Второй."},
    {"id": "c", "date": "2024-03-20", "author": "Петров", "site": "ng.ru", "rank": 5, "text": TEXT + " Третий."},
    {"id": "d", "date": "2024-04-01", "author": "Иванов", "site": "ng.ru", "extra": {"x": 1}, "text": TEXT + " Четвёртый."},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("where")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "news.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS[:3]) + "\n",
                                       encoding="utf-8")
    (corpus / "more.jsonl").write_text(json.dumps(RECORDS[3], ensure_ascii=False) + "\n", encoding="utf-8")
    build_index([corpus], root / "index")
    return root / "index"


def _ids(idx: Index, **filters: object) -> list[str]:
    return sorted({r.doc_id for r in idx.search("ремонт дорог", k=10, filters=Filters(**filters))})


def test_where_in_the_library(built: Path) -> None:
    with Index.open(built) as idx:
        assert _ids(idx, where={"author": "Иванов"}) == ["a", "b", "d"]
        assert _ids(idx, where={"author": "Иванов", "site": "ng.ru"}) == ["a", "d"]
        assert _ids(idx, where={"site": ["ng.ru", "rbc.ru"], "author": "Иванов"}) == ["a", "b", "d"]
        assert _ids(idx, where={"tags": "дороги"}) == ["a", "b"]  # a list matches by any element
        assert _ids(idx, where={"rank": 5}) == ["c"] and _ids(idx, where={"rank": "5"}) == ["c"]
        assert _ids(idx, where={"author": "Иванов"}, since="2024-03-01") == ["b", "d"]
        assert _ids(idx, where={"author": "Иванов"}, source="more.jsonl") == ["d"]
        assert _ids(idx, where={"author": "Иванов"}, since="2024-02-01", until="2024-03-31") == ["b"]
        assert _ids(idx, where={"nobody_has_this": "x"}) == []
        assert _ids(idx, where={"author": "Сидоров"}) == []
        (hit,) = idx.search("ремонт дорог", k=1, filters=Filters(where={"rank": 5}))
        assert hit.metadata == {"author": "Петров", "site": "ng.ru", "rank": 5}
        assert hit.to_dict()["metadata"] == hit.metadata and hit.to_dict()["page"] is None
        d = idx.store.document("d")
        assert d.metadata["extra"] == '{"x":1}'  # objects are kept as JSON text


def test_bad_where_is_an_invalid_argument() -> None:
    for bad in ({"": "x"}, {"a": None}, {"a": {"b": 1}}, {"a": []}):
        with pytest.raises(InvalidArgumentError):
            Filters(where=bad)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.run([RAGKIT, *args], capture_output=True, text=True, env=env, timeout=300)


def test_where_through_the_cli(built: Path) -> None:
    run = _cli("search", "ремонт дорог", "--index", str(built), "--json",
               "--where", "author=Иванов", "--where", "site=ng.ru", "--since", "2024-02-01")
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)["results"]
    assert [r["doc_id"] for r in results] == ["d"]
    assert results[0]["metadata"]["author"] == "Иванов"
    run = _cli("search", "ремонт дорог", "--index", str(built), "--json", "--where", "site=ng.ru",
               "--where", "site=rbc.ru", "--source", "news.jsonl")
    assert sorted(r["doc_id"] for r in json.loads(run.stdout)["results"]) == ["a", "b", "c"]
    run = _cli("search", "ремонт дорог", "--index", str(built), "--json", "--where", "missing=1")
    assert run.returncode == 0 and json.loads(run.stdout)["results"] == []
    run = _cli("search", "ремонт дорог", "--index", str(built), "--where", "no-equals-sign")
    assert run.returncode == 1 and run.stderr.strip() == "ragkit: error: --where must be FIELD=VALUE, got 'no-equals-sign'"


def test_store_written_before_metadata_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE documents (id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, date TEXT,
                                source TEXT NOT NULL, url TEXT, text TEXT NOT NULL);
        CREATE TABLE passages (id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL);
        INSERT INTO documents VALUES (1, 'x', 'T', '2024-01-01', 'a.txt', NULL, 'Old text here.');
        INSERT INTO passages VALUES (0, 1, 0, 14);
    """)
    conn.commit()
    conn.close()
    store = Store.open(path)
    assert store.documents()[0].metadata == {} and store.documents()[0].pages == ()
    p = store.passages([0])[0]
    assert (p.text, p.metadata, p.page) == ("Old text here.", {}, None)
    assert store.allowed_passages(Filters(where={"author": "x"})).tolist() == []
    assert store.allowed_passages(Filters(since="2023-01-01")).tolist() == [0]
    assert store.document_ids(Filters(where={"author": "x"})) == []


def test_update_keeps_metadata_of_kept_documents(tmp_path: Path) -> None:
    from ragkit import update_index

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text(json.dumps(RECORDS[0], ensure_ascii=False) + "\n", encoding="utf-8")
    build_index([corpus], tmp_path / "index")
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps(RECORDS[2], ensure_ascii=False) + "\n", encoding="utf-8")
    update_index(tmp_path / "index", add=[extra])
    with Index.open(tmp_path / "index") as idx:
        assert idx.store.document("a").metadata["tags"] == ["школы", "дороги"]
        assert _ids(idx, where={"site": "ng.ru"}) == ["a", "c"]
        assert _ids(idx, where={"author": "Петров"}) == ["c"]
