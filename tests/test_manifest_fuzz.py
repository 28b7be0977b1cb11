"""Manifest edits: every field dropped, retyped and nested, systematically and by hypothesis.

The manifest is the one file a reader trusts first; :mod:`ragkit.format.schema` checks it
when it is read. Each edited manifest is read by ``info --verify``, a lexical search, ``info``
and (for the sections an update reads) ``remove``: each ends in exit 0 (the edit touched
nothing that command uses) or exit 1 with one line, never a traceback. The cases issue #18
lists must be errors. The CLI runs in-process (CliRunner) over a real navec-ru index.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_helpers import assert_clean, assert_one_line, build, cli, manifest, write_corpus  # noqa: E402

DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = "9" * 5000
WRONG: list[Any] = [None, True, -1, 1e30, math.nan, "abc", [], {}]
TEXT_VALUES = {"1e999": "1e999", "deep": DEEP, "huge int": HUGE_INT}  # written as JSON text
UPDATE_READS = ("model", "vectors", "chunker", "counts", "query_encoder", "files", "lexical", "store", "sources")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    work = tmp_path_factory.mktemp("manifest-fuzz")
    root = work / "index"
    build(root, write_corpus(work / "corpus", 12))
    return root


@pytest.fixture
def idx(pristine, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(pristine, copy)
    return copy


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of the manifest (one file record stands for all; lists as wholes)."""
    out = []
    if isinstance(value, dict):
        items = list(value.items())
        if prefix == ("files",):
            items = items[:1]
        for key, child in items:
            out.append((*prefix, key))
            out.extend(_paths(child, (*prefix, key)))
    return out


def _edit(m: dict, path: tuple, value: Any, drop: bool = False) -> dict:
    m = json.loads(json.dumps(m))
    node = m
    for key in path[:-1]:
        node = node[key]
    if drop:
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    return m


def _write(root: Path, m: dict, text_value: str | None = None) -> None:
    text = json.dumps(m)
    if text_value is not None:
        text = text.replace('"@@VALUE@@"', text_value)
    (root / "manifest.json").write_text(text, encoding="utf-8")


def _run_all(root: Path, pristine: Path, path: tuple, what: object, update: bool = False) -> list[int]:
    codes = []
    commands = [["info", "--verify", "--index", root], ["search", "метро", "--mode", "lexical", "--index", root],
                ["info", "--index", root, "--json"]]
    if update or (path and path[0] in UPDATE_READS):
        commands.append(["remove", "doc0001.txt", "--index", root, "--quiet"])
    for args in commands:
        rc, _, err = cli(args)
        assert_clean(rc, err, (what, args[0]))
        codes.append(rc)
        if rc == 0 and args[0] == "remove":  # a harmless edit: the update went through; start over
            shutil.rmtree(root)
            shutil.copytree(pristine, root)
    return codes


def _node(m: dict, path: tuple) -> Any:
    for key in path:
        m = m[key]
    return m


def test_every_field_dropped_retyped_and_nested(pristine, idx):
    """Each field dropped and set to each wrong type; numbers also to -1, 1e30, NaN, 1e999 and a
    5,000-digit integer; each section also to 100k-deep nesting."""
    base = manifest(pristine)
    paths = _paths(base)
    mutations = 0
    for path in paths:
        current = _node(base, path)
        numeric = isinstance(current, (int, float)) and not isinstance(current, bool)
        _write(idx, _edit(base, path, None, drop=True))
        _run_all(idx, pristine, path, (path, "dropped"))
        mutations += 1
        values = WRONG if numeric else [v for v in WRONG if not isinstance(v, (int, float)) or isinstance(v, bool)]
        for value in values:
            _write(idx, _edit(base, path, value))
            _run_all(idx, pristine, path, (path, value))
            mutations += 1
        texts = [n for n in TEXT_VALUES if (n != "deep" and numeric) or (n == "deep" and len(path) == 1)]
        for name in texts:
            _write(idx, _edit(base, path, "@@VALUE@@"), TEXT_VALUES[name])
            _run_all(idx, pristine, path, (path, name))
            mutations += 1
    print(f"\nmanifest mutations: {mutations} over {len(paths)} fields, each read by 3-4 commands")


ISSUE_CASES = {  # issue #18, item 5: each was a KeyError, ValueError, ... traceback
    "counts {}": (("counts",), {}), "counts 'abc'": (("counts",), "abc"),
    "counts.passages 1e999": (("counts", "passages"), "@1e999"), "counts.passages NaN": (("counts", "passages"), math.nan),
    "counts.passages -1": (("counts", "passages"), -1), "counts.passages 1e30": (("counts", "passages"), 1e30),
    "model {}": (("model",), {}), "model.dimension 'abc'": (("model", "dimension"), "abc"),
    "query_encoder 'abc'": (("query_encoder",), "abc"), "lexical 'x'": (("lexical",), "x"),
    "chunker 'x'": (("chunker",), "x"), "sources 'x'": (("sources",), "x"), "tuning 'x'": (("vectors", "tuning"), "x"),
    "no vectors.factory": (("vectors", "factory"), "@drop"), "100k-deep nesting": (("model",), "@deep"),
}


@pytest.mark.parametrize("case", list(ISSUE_CASES))
def test_the_cases_of_the_issue_are_one_line_errors(pristine, idx, tmp_path, case):
    path, value = ISSUE_CASES[case]
    new = tmp_path / "new.txt"
    new.write_text("Новая статья о метро.", encoding="utf-8")
    base = manifest(pristine)
    if value == "@drop":
        _write(idx, _edit(base, path, None, drop=True))
    elif isinstance(value, str) and value.startswith("@"):
        _write(idx, _edit(base, path, "@@VALUE@@"), {"@1e999": "1e999", "@deep": DEEP}[value])
    else:
        _write(idx, _edit(base, path, value))
    for args in (["info", "--index", idx], ["search", "метро", "--index", idx], ["add", new, "--index", idx]):
        rc, _, err = cli(args)
        assert_one_line(rc, err, (case, args[0]))


# --------------------------------------------------------------------------- hypothesis

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10 ** 20), 10 ** 20) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["/etc/passwd", "../x", "vectors-000001.faiss", "lexical-000001"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@st.composite
def _mutations(draw, paths):
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["drop", "retype", "nest"]))
        edits.append((path, op, draw(_JSON)))
    return edits


@pytest.fixture(scope="module")
def fuzz_root(pristine, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "idx"
    shutil.copytree(pristine, root)
    return root


def test_hypothesis_manifest_fuzzer(pristine, fuzz_root):
    base = manifest(pristine)
    paths = _paths(base)
    seen = {"examples": 0, "errors": 0}

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(edits=_mutations(paths))
    def check(edits):
        m = json.loads(json.dumps(base))
        for path, op, value in edits:
            node = m
            for key in path[:-1]:
                if not isinstance(node, dict) or key not in node:
                    break
                node = node[key]
            else:
                if not isinstance(node, dict):
                    continue
                if op == "drop":
                    node.pop(path[-1], None)
                elif op == "retype":
                    node[path[-1]] = value
                else:
                    node[path[-1]] = [{"x": node.get(path[-1])}, value]
        (fuzz_root / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
        codes = _run_all(fuzz_root, pristine, (), edits, update=True)
        seen["examples"] += 1
        seen["errors"] += sum(code == 1 for code in codes)

    check()
    print(f"\nhypothesis manifest fuzzer: {seen['examples']} examples, {seen['errors']} one-line errors")
    assert seen["errors"] > 0
