"""Crash safety of index writes: SIGKILL a writer, then the index is the old or the new state.

What is under test is the write protocol (generation files, then an atomic manifest replace),
so most writers here are short-lived Python processes that call ``ragkit.build_index`` /
``update_index`` with the DETERMINISTIC FAKE embedder of conftest.py (no model to load):

- targeted kills: the writer blocks at a named point of the protocol (cache written, a data
  file half written, every data file written, manifest written beside but not renamed, old
  generation half deleted) and is killed there; the state must be exactly the old one (or the
  new one, for the last point);
- random kills: a writer alternates two states (build A, update to B, build A, ...) and is
  killed after a seeded random delay; the state must be A or B.

After each kill ``Index.verify`` passes, lexical and dense results equal the expected state's,
and the same write run again (recovery) reaches the new state. Last, the real ``ragkit add``
is killed at seeded moments. The 50-kill version with the real model is
``benchmarks/crash_bench.py``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ragkit import Document, Index, build_index
from ragkit.build.pipeline import update_index

TESTS = Path(__file__).resolve().parent
RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")
SEED = 20240611
QUERIES = ["w11 w12", "w7", "w250 w3", "w999", "w42 w43 w44"]

_rng = random.Random(SEED)
_WORDS = [f"w{i}" for i in range(1200)]


def _doc(doc_id: str) -> Document:
    return Document(doc_id, " ".join(_rng.choice(_WORDS) for _ in range(_rng.randint(20, 140))) + ".",
                    title=f"Title of {doc_id}", source=f"/src/{doc_id}.txt")


DOCS_A = [_doc(f"a{i}") for i in range(140)]
ADD_B = [_doc(f"a{i}") for i in range(0, 20)] + [_doc(f"b{i}") for i in range(25)]  # 20 replaced, 25 new
REMOVE_B = [f"a{i}" for i in range(100, 115)]
DOCS_C = DOCS_A[40:] + [_doc(f"c{i}") for i in range(30)]

# The child: a writer that either blocks at a protocol point or loops between two states.
CHILD = r"""
import json, os, shutil, sys, time
cfg = json.load(open(sys.argv[1]))
sys.path.insert(0, cfg["tests"])
from conftest import FakeHashEmbedder
from ragkit import Document, build_index
from ragkit.build.pipeline import update_index
import ragkit.format.layout, ragkit.encoders.cache, ragkit.lexical.bm25

docs = {k: [Document(**d) for d in v] for k, v in cfg["docs"].items()}
emb, root = FakeHashEmbedder(), cfg["root"]

def update():
    update_index(root, add=docs["ADD_B"], remove=cfg["remove_b"], embedder=emb)

def build(name):
    build_index(docs[name], root, embedder=emb)

def block(point):
    print("AT", point, flush=True)
    while True:
        time.sleep(60)

def after(obj, name, point, nth=1, when=lambda *a, **k: True):
    real, calls = getattr(obj, name), [0]
    def wrapper(*args, **kwargs):
        if not when(*args, **kwargs):
            return real(*args, **kwargs)
        calls[0] += 1
        if cfg["before"] and calls[0] == nth:
            block(point)
        out = real(*args, **kwargs)
        if calls[0] == nth:
            block(point)
        return out
    setattr(obj, name, wrapper)

point = cfg.get("point")
cfg["before"] = point in ("before-manifest", "manifest-beside")
if point == "cache-written":
    after(ragkit.encoders.cache.EmbeddingCache, "put", point)
elif point == "lexical-half-written":
    after(ragkit.lexical.bm25, "_save_npy", point, nth=2)
elif point == "before-manifest":
    after(ragkit.format.layout, "write_manifest", point)
elif point == "manifest-beside":
    after(os, "replace", point, when=lambda src, dst, *a, **k: str(dst).endswith("manifest.json"))
elif point == "cleanup-half-done":
    after(shutil, "rmtree", point)

if point:
    print("READY", flush=True)
    update() if cfg["op"] == "update" else build("C")
    print("DONE", flush=True)
else:
    print("READY", flush=True)
    while True:
        update()
        print("B", flush=True)
        build("A")
        print("A", flush=True)
"""


def _dicts(docs: list[Document]) -> list[dict]:
    return [{"id": d.id, "text": d.text, "title": d.title, "source": d.source} for d in docs]


def _results(root: Path, fake) -> dict[str, list[list[str]]]:
    with Index.open(root, embedder=fake) as idx:
        return {mode: [[r.doc_id for r in idx.search(q, k=8, mode=mode, per_doc=None)] for q in QUERIES]
                for mode in ("lexical", "dense")}


def _verify(root: Path, fake) -> None:
    with Index.open(root, embedder=fake) as idx:
        idx.verify()


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """Reference indexes of A, B (A updated) and C, built without kills, and their results."""
    from conftest import FakeHashEmbedder

    fake = FakeHashEmbedder()
    base = tmp_path_factory.mktemp("states")
    build_index(DOCS_A, base / "A", embedder=fake)
    build_index(DOCS_A, base / "A", embedder=fake)  # two generations: the next write deletes the older
    shutil.copytree(base / "A", base / "B")
    update_index(base / "B", add=ADD_B, remove=REMOVE_B, embedder=fake)
    build_index(DOCS_C, base / "C", embedder=fake)
    expected = {name: _results(base / name, fake) for name in "ABC"}
    assert expected["A"] != expected["B"] and expected["A"] != expected["C"]
    config = base / "docs.json"
    config.write_text(json.dumps({"A": _dicts(DOCS_A), "ADD_B": _dicts(ADD_B), "C": _dicts(DOCS_C)}))
    return base, expected, fake


def _start_child(states, root: Path, tmp_path: Path, **cfg) -> subprocess.Popen:
    base, _, _ = states
    docs = json.loads((base / "docs.json").read_text())
    conf = tmp_path / "child.json"
    conf.write_text(json.dumps({"tests": str(TESTS), "root": str(root), "docs": docs, "remove_b": REMOVE_B, **cfg}))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 60) -> None:
    """Read the writer's lines until one starts with ``word``; a writer that hangs is killed."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        while line := proc.stdout.readline():
            if line.startswith(word):
                return
    finally:
        watchdog.cancel()
    raise AssertionError(f"writer exited before {word!r}: {proc.stderr.read()[-3000:]}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


POINTS = [  # (point, operation, the state the kill must leave)
    ("cache-written", "update", "A"),
    ("lexical-half-written", "build", "A"),
    ("before-manifest", "update", "A"),
    ("manifest-beside", "build", "A"),
    ("cleanup-half-done", "update", "B"),
]


@pytest.mark.parametrize(("point", "op", "left"), POINTS, ids=[p for p, _, _ in POINTS])
def test_kill_at_each_point_of_the_write_protocol(states, tmp_path, point, op, left):
    base, expected, fake = states
    root = tmp_path / "index"
    shutil.copytree(base / "A", root)
    proc = _start_child(states, root, tmp_path, point=point, op=op)
    try:
        _wait_for(proc, "AT")
    finally:
        _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    _verify(root, fake)
    assert _results(root, fake) == expected[left], f"killed at {point}: not the {left} state"
    # The next write over the debris reaches the new state.
    if op == "update":
        update_index(root, add=ADD_B, remove=[i for i in REMOVE_B if left == "A"], embedder=fake)
    else:
        build_index(DOCS_C, root, embedder=fake)
    _verify(root, fake)
    assert _results(root, fake) == expected["B" if op == "update" else "C"]


def test_random_kills_of_a_busy_writer(states, tmp_path):
    """A writer alternating A -> B -> A ..., killed at 4 seeded moments: always A or B, never a mix."""
    base, expected, fake = states
    rng = random.Random(SEED)
    for kill in range(4):
        root = tmp_path / f"index{kill}"
        shutil.copytree(base / "A", root)
        proc = _start_child(states, root, tmp_path)
        try:
            _wait_for(proc, "READY")
            time.sleep(rng.uniform(0.05, 1.5))
        finally:
            _kill(proc)
        _verify(root, fake)
        got = _results(root, fake)
        debris = _uncommitted_files(root)
        assert got in (expected["A"], expected["B"]), f"kill {kill}: neither state A nor B (debris {debris})"
        update_index(root, add=ADD_B, remove=[i for i in REMOVE_B if got == expected["A"]], embedder=fake)
        _verify(root, fake)
        assert _results(root, fake) == expected["B"]


def _uncommitted_files(root: Path) -> list[str]:
    manifest = json.loads((root / "manifest.json").read_text())
    current = {Path(name).parts[0] for name in manifest["files"]}
    return sorted(p.name for p in root.iterdir()
                  if p.name not in current and p.name not in ("manifest.json", ".lock", "embeddings.sqlite"))


# --------------------------------------------------------------------------- the real CLI


def _cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([RAGKIT, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _cli_results(root: Path) -> list[list[str]]:
    out = _cli(["search", "--queries", str(root.parent / "queries.txt"), "--index", str(root), "--json",
                "--mode", "lexical"], timeout=120)
    assert out.returncode == 0, out.stderr
    return [[r["doc_id"] for r in json.loads(line)["results"]] for line in out.stdout.splitlines()]


def test_kill_the_real_ragkit_add(tmp_path):
    """The real model and CLI: `ragkit add` killed at 2 seeded moments of its calibrated life."""
    rng = random.Random(SEED)
    corpus, extra = tmp_path / "corpus", tmp_path / "extra"
    corpus.mkdir()
    extra.mkdir()
    topics = ["harbour cranes", "alpine glaciers", "desert foxes", "river barges", "city trams", "coral reefs"]
    for i, topic in enumerate(topics):
        (corpus / f"d{i}.txt").write_text(f"On {topic}\nA short article about {topic}. " * 3)
    (extra / "d1.txt").write_text("On alpine glaciers, revised\nThe glaciers retreat; trams and cranes appear too.")
    (extra / "n1.txt").write_text("On harbour tugboats\nTugboats push cranes and barges around the harbour.")
    (tmp_path / "queries.txt").write_text("glaciers\ncranes\ntrams harbour\n")
    old = tmp_path / "old"
    built = _cli(["index", str(corpus), "--index", str(old), "--json", "--max-tokens", "32"])
    assert built.returncode == 0, built.stderr
    expected_old = _cli_results(old)
    new = tmp_path / "new"
    shutil.copytree(old, new)
    start = time.monotonic()
    added = _cli(["add", str(extra), "--index", str(new), "--json"])
    duration = time.monotonic() - start
    assert added.returncode == 0, added.stderr
    expected_new = _cli_results(new)
    assert expected_old != expected_new
    for kill in range(2):
        root = tmp_path / f"killed{kill}"
        shutil.copytree(old, root)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.Popen([RAGKIT, "add", str(extra), "--index", str(root), "--json"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.4, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        verified = _cli(["info", "--verify", "--index", str(root)], timeout=120)
        assert verified.returncode == 0, verified.stderr
        assert _cli_results(root) in (expected_old, expected_new), f"kill {kill}: neither the old nor the new state"
