"""Reprints: detection (ragkit.ingest.dedup), collapsing in Index.search and in `ragkit search`.

Indexes are real (navec-ru, FAISS, SQLite) over small Russian articles in tmp_path; the CLI is
run in-process and as a real subprocess of the installed `ragkit` command.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.ingest import dedup
from ragkit.ingest.dedup import document_keys, find_duplicates, normalised, read_groups

RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")

ELECTION = ("Выборы губернатора области назначены на сентябрь. Избирательная комиссия утвердила "
            "календарь кампании, кандидаты начнут сбор подписей в июне. Действующий губернатор "
            "заявил, что пойдёт на второй срок, а оппозиция пока не назвала своего кандидата.")
OTHERS = [
    "В городе открылась новая линия метро. Пассажиры смогут доехать до центра за двадцать минут, "
    "сообщили в транспортном комплексе столицы.",
    "Сборная по хоккею обыграла соперников в финале турнира. Решающую шайбу забросил молодой "
    "нападающий в третьем периоде матча.",
    "Урожай пшеницы в этом году оказался выше прошлогоднего. Аграрии связывают рост с тёплой "
    "весной и своевременными дождями в июне.",
    "Театр представил премьеру спектакля по пьесе Чехова. Критики отметили работу режиссёра и "
    "декорации, созданные молодым художником.",
]


def _corpus() -> list[ragkit.Document]:
    docs = [ragkit.Document("news-1", ELECTION, title="Выборы губернатора", source="paper-a.jsonl")]
    docs.append(ragkit.Document("reprint-1", ELECTION.replace("  ", " "), title="Губернатора выберут в сентябре",
                                source="paper-b.jsonl"))
    docs += [ragkit.Document(f"other-{i}", t, title=t.split(".")[0], source="paper-a.jsonl") for i, t in enumerate(OTHERS)]
    return docs


def test_exact_groups_ignore_case_spacing_and_punctuation():
    texts = ["Выборы губернатора пройдут в сентябре.", "  ВЫБОРЫ губернатора — пройдут в сентябре!! ",
             "Выборы мэра пройдут в сентябре.", "", ""]
    assert find_duplicates(texts, near=False) == [[0, 1]]  # empty texts are not a group
    assert normalised("Ёлка, ёж!") == ["елка", "еж"]


def test_near_duplicates_found_and_distinct_texts_kept_apart():
    rng = random.Random(7)
    words = ELECTION.split()
    edited = words[:]
    for i in rng.sample(range(len(words)), 1):  # one of the 38 words changed: Jaccard 0.82 >= 0.7
        edited[i] = "изменено"
    texts = [ELECTION, " ".join(edited), *OTHERS]
    assert find_duplicates(texts) == [[0, 1]]
    for i in rng.sample(range(len(words)), 3):  # four words changed: Jaccard 0.43, kept apart
        edited[i] = "другое"
    assert find_duplicates([ELECTION, " ".join(edited)]) == []
    assert find_duplicates(texts, near=False) == []
    rewritten = " ".join(rng.sample(words, len(words)))  # the same words in another order
    assert find_duplicates([ELECTION, rewritten]) == []


def test_keys_do_not_depend_on_how_many_texts_are_hashed_at_once(monkeypatch):
    texts = [d.text for d in _corpus()] * 3 + ["", "short one"]
    whole = document_keys(texts)
    monkeypatch.setattr(dedup, "_BLOCK", 2)
    np.testing.assert_array_equal(document_keys(texts), whole)
    assert (whole[:, 3:] != 0).any()  # the near-duplicate bands were computed, not only the exact keys


def test_build_stores_groups_and_search_collapses(tmp_path):
    result = ragkit.build_index(_corpus(), tmp_path / "idx", model="navec-ru")
    assert result.documents == 6
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    entry = manifest["duplicates"]
    assert entry["groups"] == 1 and entry["documents"] == 2
    groups = read_groups(tmp_path / "idx" / entry["file"])
    assert [[doc_id for _, doc_id, _ in g] for g in groups.groups] == [["news-1", "reprint-1"]]

    with ragkit.Index.open(tmp_path / "idx") as idx:
        for mode in ("hybrid", "lexical", "dense"):
            hits = idx.search("выборы губернатора", k=5, mode=mode, per_doc=1)
            ids = [h.doc_id for h in hits]
            assert len({"news-1", "reprint-1"} & set(ids)) == 1, (mode, ids)
            top = next(h for h in hits if h.doc_id in ("news-1", "reprint-1"))
            other = "reprint-1" if top.doc_id == "news-1" else "news-1"
            source = "paper-b.jsonl" if other == "reprint-1" else "paper-a.jsonl"
            assert top.duplicates == [{"doc_id": other, "source": source}]
            assert all(h.duplicates == [] for h in hits if h is not top)
        every = idx.search("выборы губернатора", k=5, mode="lexical", per_doc=1, collapse=False)
        assert {"news-1", "reprint-1"} <= {h.doc_id for h in every}
        assert all(h.duplicates == [] for h in every)


def test_collapsed_copies_do_not_end_the_search_short_of_k(tmp_path):
    """Six reprints fill the first round of candidates; collapsed to one, the search must widen
    and still return k documents (it stopped at one: the collapsed count read as exhaustion)."""
    docs = [ragkit.Document(f"copy-{i}", ELECTION, title="Выборы губернатора") for i in range(6)]
    docs += [ragkit.Document(f"other-{i}", f"{text} Выборы губернатора прошли спокойно.")
             for i, text in enumerate(OTHERS)]
    ragkit.build_index(docs, tmp_path / "idx", model="navec-ru")
    with ragkit.Index.open(tmp_path / "idx") as idx:
        for mode in ("lexical", "hybrid"):
            hits = idx.search("выборы губернатора", k=5, mode=mode, per_doc=None)
            assert len(hits) == 5, (mode, [h.doc_id for h in hits])
            assert sum(h.doc_id.startswith("copy-") for h in hits) == 1
            assert len(hits[0].duplicates) == 5


def _edited(text: str, at: list[int]) -> str:
    words = text.split()
    for i in at:
        words[i] = f"правка{i}"
    return " ".join(words)


def _jaccard(a: str, b: str) -> float:
    from ragkit.ingest.dedup import _shingles

    x, y = _shingles(normalised(a)), _shingles(normalised(b))
    return len(x & y) / len(x | y)


def _groups(root: Path) -> list[list[str]]:
    manifest = json.loads((root / "manifest.json").read_text())
    return sorted(sorted(doc_id for _, doc_id, _ in g) for g in read_groups(root / manifest["duplicates"]["file"]).groups)


def test_update_finds_the_groups_of_a_fresh_build_and_hashes_only_what_it_adds(tmp_path, monkeypatch):
    from ragkit.ingest import dedup

    base = ELECTION + " " + OTHERS[2]
    chain = [base, _edited(base, [3, 25]), _edited(base, [3, 25, 12, 44])]  # a ~ b ~ c, a !~ c
    assert _jaccard(chain[0], chain[1]) >= 0.7 and _jaccard(chain[1], chain[2]) >= 0.7
    assert _jaccard(chain[0], chain[2]) < 0.7
    first = [ragkit.Document(f"chain-{i}", t, title="Выборы") for i, t in enumerate(chain)]
    first += [ragkit.Document(f"other-{i}", t, title=t.split(".")[0]) for i, t in enumerate(OTHERS) if i != 2]
    ragkit.build_index(first, tmp_path / "idx", model="navec-ru")
    assert _groups(tmp_path / "idx") == [["chain-0", "chain-1", "chain-2"]]

    hashed: list[int] = []
    keys_of = dedup.document_keys
    monkeypatch.setattr(dedup, "document_keys", lambda texts, **kw: hashed.append(len(texts)) or keys_of(texts, **kw))
    added = [ragkit.Document("copy-of-other-0", OTHERS[0].upper(), title="Копия"),  # an exact reprint of a kept one
             ragkit.Document("near-other-1", _edited(OTHERS[1], [4]) + " " + OTHERS[1], title="Почти"),
             ragkit.Document("new-3", OTHERS[3] + " Дополнение к новости о премьере.", title="Новая")]
    ragkit.update_index(tmp_path / "idx", add=added, remove=["chain-1"])  # the chain's middle goes: a and c part
    assert hashed == [len(added)]
    updated = _groups(tmp_path / "idx")

    monkeypatch.setattr(dedup, "document_keys", keys_of)
    final = [d for d in first if d.id != "chain-1"] + added
    ragkit.build_index(final, tmp_path / "fresh", model="navec-ru")
    assert updated == _groups(tmp_path / "fresh")
    assert ["copy-of-other-0", "other-0"] in updated and ["new-3", "other-3"] in updated
    assert not any("chain-0" in g for g in updated)
    ragkit.update_index(tmp_path / "idx", remove=["copy-of-other-0"])  # takes over the near pair new-3 ~ other-3
    assert _groups(tmp_path / "idx") == [g for g in updated if "other-0" not in g]


def _jsonl(path: Path, docs: list[ragkit.Document]) -> None:
    path.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n"
                            for d in docs), encoding="utf-8")


def _corpus_dir(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = _corpus()
    _jsonl(corpus / "paper-a.jsonl", [d for d in docs if d.source == "paper-a.jsonl"])
    _jsonl(corpus / "paper-b.jsonl", [d for d in docs if d.source == "paper-b.jsonl"])
    return corpus


def test_cli_search_collapses_and_no_collapse_keeps_copies(tmp_path):
    corpus = _corpus_dir(tmp_path)
    runner = CliRunner()
    built = runner.invoke(app, ["index", str(corpus), "--index", str(tmp_path / "idx"), "--quiet"])
    assert built.exit_code == 0, built.output
    res = runner.invoke(app, ["search", "выборы губернатора", "--index", str(tmp_path / "idx"), "--json",
                              "--per-doc", "1", "--mode", "lexical"])
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    ids = [r["doc_id"] for r in results]
    assert len({"news-1", "reprint-1"} & set(ids)) == 1
    top = results[0]
    assert top["doc_id"] in ("news-1", "reprint-1")
    assert [d["doc_id"] for d in top["duplicates"]] == [({"news-1", "reprint-1"} - {top["doc_id"]}).pop()]
    assert top["duplicates"][0]["source"].endswith(".jsonl")

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    sub = subprocess.run([RAGKIT, "search", "выборы губернатора", "--index", str(tmp_path / "idx"), "--json",
                          "--per-doc", "1", "--mode", "lexical", "--no-collapse"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert sub.returncode == 0, sub.stderr
    every = json.loads(sub.stdout)["results"]
    assert [r["doc_id"] for r in every][:2] in (["news-1", "reprint-1"], ["reprint-1", "news-1"])
    assert all(r["duplicates"] == [] for r in every)


def test_index_without_groups_still_searches(tmp_path):
    ragkit.build_index(_corpus(), tmp_path / "idx", model="navec-ru")
    manifest_path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("duplicates")  # as written by a ragkit before duplicate detection
    manifest_path.write_text(json.dumps(manifest))
    with ragkit.Index.open(tmp_path / "idx") as idx:
        assert idx.duplicate_groups() is None
        ids = [h.doc_id for h in idx.search("выборы губернатора", k=5, mode="lexical", per_doc=1)]
    assert {"news-1", "reprint-1"} <= set(ids)


@pytest.mark.parametrize("bad", ["0", "-3", "x"])
def test_cli_bad_rerank_depth_is_one_line(tmp_path, bad):
    ragkit.build_index(_corpus(), tmp_path / "idx", model="navec-ru")
    res = CliRunner().invoke(app, ["search", "выборы", "--index", str(tmp_path / "idx"), "--rerank", "nowhere",
                                   "--rerank-depth", bad])
    assert res.exit_code != 0
    assert "Traceback" not in res.output
