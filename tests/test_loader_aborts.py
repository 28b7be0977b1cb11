"""Inputs that used to abort a whole `ragkit index` run are skips with a reason (issue #18).

Each case is a real subprocess of the installed `ragkit index --json` over a folder holding a
good article and the hostile input: exit 0, the good article indexed, the reason reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")
GOOD = "Кошки любят спать на солнце. Они мурлычут и ловят мышей во дворе."


def _index(tmp_path: Path, *paths: Path) -> tuple[int, dict, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    run = subprocess.run([RAGKIT, "index", *map(str, paths), "--index", str(tmp_path / "index"), "--json", "--quiet"],
                         capture_output=True, env=env, timeout=600)
    out = run.stdout.decode("utf-8")
    return run.returncode, (json.loads(out) if run.returncode == 0 else {}), run.stderr.decode("utf-8", "replace")


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "good.txt").write_text(GOOD, encoding="utf-8")
    return folder


def test_jsonl_line_nested_100k_levels(tmp_path: Path) -> None:
    folder = _corpus(tmp_path)
    (folder / "deep.jsonl").write_text('{"text": "ok", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    rc, out, err = _index(tmp_path, folder)
    assert rc == 0, err
    assert out["documents"] == 1
    assert out["skipped"] == [{"location": f"{folder}/deep.jsonl:1", "reason": "bad JSON: nested too deeply to parse"}]


def test_jsonl_integer_of_5000_digits(tmp_path: Path) -> None:
    folder = _corpus(tmp_path)
    (folder / "big.jsonl").write_text('{"text": "digits", "n": ' + "7" * 5000 + "}\n", encoding="utf-8")
    rc, out, err = _index(tmp_path, folder)
    assert rc == 0, err
    assert out["documents"] == 1
    (skip,) = out["skipped"]
    assert skip["location"] == f"{folder}/big.jsonl:1" and "4300 digits" in skip["reason"]


def test_file_name_with_byte_ff(tmp_path: Path) -> None:
    folder = _corpus(tmp_path)
    name = os.path.join(os.fsencode(folder), b"caf\xff.txt")
    with open(name, "w", encoding="utf-8") as fh:
        fh.write("Собаки охраняют дом и любят долгие прогулки по парку.")
    rc, out, err = _index(tmp_path, folder)
    assert rc == 0, err
    assert out["documents"] == 2 and out["skipped"] == []
    from ragkit import Index

    with Index.open(tmp_path / "index") as idx:  # stored with the undecodable byte as U+FFFD
        assert idx.store.document("caf\ufffd.txt").source == f"{folder}/caf\ufffd.txt"
    rc, out, err = _index(tmp_path, Path(os.fsdecode(name)))  # the file itself as the argument
    assert rc == 0, err
    assert out["documents"] == 1


def test_980_nested_folders(tmp_path: Path) -> None:
    folder = _corpus(tmp_path)
    deep = folder
    for _ in range(980):  # one level at a time: os.makedirs and Path.mkdir(parents=True) recurse
        deep = deep / "d"
        deep.mkdir()
    (deep / "leaf.txt").write_text("Глубоко вложенная папка хранит заметку о перелётных птицах.", encoding="utf-8")
    try:
        rc, out, err = _index(tmp_path, folder)
    finally:  # remove the chain leaf first: pytest's own cleanup (shutil.rmtree) recurses and fails on it
        (deep / "leaf.txt").unlink()
        while deep != folder:
            deep.rmdir()
            deep = deep.parent
    assert rc == 0, err
    assert out["documents"] == 2 and out["skipped"] == []


def test_nothing_to_index_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "empty.txt").write_text("", encoding="utf-8")
    rc, _, err = _index(tmp_path, folder)
    assert rc == 1
    assert err.strip().splitlines() == [
        f"ragkit: error: nothing to index: no readable document with text (1 file, 0 documents, 1 skipped: "
        f"{folder}/empty.txt: empty file)"]


@pytest.mark.parametrize("depth", [50, 2000])
def test_deep_but_parseable_metadata_is_kept_as_json_text(tmp_path: Path, depth: int) -> None:
    from ragkit.ingest.loaders import load_documents

    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"text": "t", "tree": {"a": [[1]]}}) + "\n" + '{"text": "u", "x": ' + "[" * depth + "]" * depth + "}\n",
                    encoding="utf-8")
    docs, report = load_documents([path])
    assert docs[0].metadata == {"tree": '{"a":[[1]]}'}
    assert len(docs) + len(report.skipped) == 2
