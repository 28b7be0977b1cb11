"""The CLI in-process (CliRunner) and as real subprocesses of the installed `ragkit` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli.app import app

from conftest import SEEDS

runner = CliRunner()
RESULT_KEYS = {"rank", "score", "doc_id", "title", "date", "source", "start", "end", "text"}
RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "a.txt").write_text("date 2024-03-01 Solar panels\nSolar panels turn sunlight into electricity.\n", encoding="utf-8")
    (root / "b.md").write_text("# Sourdough\n\nSourdough bread rises with wild yeast and lactobacilli.\n", encoding="utf-8")
    (root / "c.jsonl").write_text(
        json.dumps({"_id": "whales", "title": "Whales", "text": "Blue whales are the largest animals ever known."}) + "\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus):
    index = tmp_path_factory.mktemp("cli-index")
    res = runner.invoke(app, ["index", str(corpus), "--index", str(index), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["documents"] == 3 and out["passages"] == 3
    return index


def test_search_json_keys_and_offsets(built, corpus):
    res = runner.invoke(app, ["search", "the biggest animal in the ocean", "--index", str(built), "--json", "-k", "2"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["query"] == "the biggest animal in the ocean"
    assert len(obj["results"]) == 2
    top = obj["results"][0]
    assert RESULT_KEYS <= top.keys()
    assert top["doc_id"] == "whales" and top["rank"] == 1
    assert top["text"] == "Blue whales are the largest animals ever known."[top["start"] : top["end"]]


def test_search_table_and_info(built):
    res = runner.invoke(app, ["search", "bread yeast", "--index", str(built)])
    assert res.exit_code == 0, res.output
    assert "Sourdough" in res.stdout
    info = runner.invoke(app, ["info", "--index", str(built)])
    assert info.exit_code == 0 and "all-MiniLM-L6-v2" in info.stdout and "3 documents" in info.stdout
    info_json = json.loads(runner.invoke(app, ["info", "--index", str(built), "--json"]).stdout)
    assert info_json["counts"] == {"documents": 3, "passages": 3, "passage_ids": 3}


def test_queries_file_prints_one_json_per_line(built, tmp_path):
    qfile = tmp_path / "q.txt"
    qfile.write_text("solar power\n\nwhales\n", encoding="utf-8")
    res = runner.invoke(app, ["search", "--queries", str(qfile), "--index", str(built), "--json", "-k", "1"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["query"] for o in lines] == ["solar power", "whales"]
    assert [o["results"][0]["doc_id"] for o in lines] == ["a.txt", "whales"]
    stdin = runner.invoke(app, ["search", "--queries", "-", "--index", str(built), "--json"], input="bread\n")
    assert json.loads(stdin.stdout)["results"][0]["doc_id"] == "b.md"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "x", "--index", "{missing}"], "no index"),
        (["search", "   ", "--index", "{built}"], "query is empty"),
        (["search", "x", "-k", "0", "--index", "{built}"], "-k must be"),
        (["search", "x", "--index", "{built}", "--model", "no-such/model"], "built with model"),
        (["index", "{empty}", "--index", "{tmp}/new"], "nothing to index"),
        (["index", "{corpus}", "--index", "{tmp}/m", "--model", "no-such/model"], "cannot load embedding model"),
        (["info", "--index", "{missing}"], "no index"),
        (["eval", "{missing}"], "does not exist"),
    ],
)
def test_errors_are_one_line_without_traceback(args, message, built, corpus, tmp_path):
    (tmp_path / "empty").mkdir()
    fill = {"missing": str(tmp_path / "missing"), "built": str(built), "empty": str(tmp_path / "empty"),
            "tmp": str(tmp_path), "corpus": str(corpus)}
    res = runner.invoke(app, [a.format(**fill) for a in args])
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("ragkit: error:"), res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.output


def _run(args, cwd, env=None, input=None):
    e = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    e.pop("RAGKIT_INDEX", None)
    e.pop("RAGKIT_SEEDS", None)
    return subprocess.run([RAGKIT, *args], cwd=cwd, env=e, capture_output=True, text=True, input=input, timeout=600)


def test_subprocess_default_index_builds_from_seeds_then_reuses(tmp_path):
    shutil.copytree(SEEDS, tmp_path / "seeds")
    first = _run(["search", "технопарки Москвы", "--json"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    obj = json.loads(first.stdout)
    seed_text = (tmp_path / "seeds" / "000_aad6b44fa40b1e2f.txt").read_text(encoding="utf-8")
    assert obj["results"] and RESULT_KEYS <= obj["results"][0].keys()
    for r in obj["results"]:
        assert r["doc_id"] == "000_aad6b44fa40b1e2f.txt" and r["date"] == "2025-10-22"
        assert r["text"] in seed_text
    manifest = tmp_path / "index" / "manifest.json"
    created = json.loads(manifest.read_text())["created"]
    stamp = manifest.stat().st_mtime_ns

    again = _run(["search", "технопарки Москвы", "--json"], cwd=tmp_path)
    assert again.returncode == 0 and manifest.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert json.loads(again.stdout) == obj

    (tmp_path / "seeds" / "extra.txt").write_text("Новая статья о метро Москвы.", encoding="utf-8")
    third = _run(["search", "метро", "--json"], cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert manifest.stat().st_mtime_ns != stamp and json.loads(manifest.read_text())["counts"]["documents"] == 2
    assert created  # the rebuilt manifest is complete


def test_subprocess_error_exit_code_and_python_m(tmp_path):
    res = _run(["search", "x", "--index", str(tmp_path / "nope")], cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr and res.stderr.startswith("ragkit: error:")
    mod = subprocess.run([sys.executable, "-m", "ragkit", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert mod.returncode == 0 and "search" in mod.stdout


def test_import_and_help_stay_light():
    code = (
        "import sys, ragkit; from ragkit.cli.app import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'faiss', 'ray') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
