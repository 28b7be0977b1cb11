"""Damaged, truncated and foreign index files: a clear one-line error and exit 1, never a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ragkit import Document, build_index

RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")
DOCS = [Document(f"d{i}", f"Документ {i} о метро и технопарках Москвы. Document {i} text.") for i in range(5)]


def _file(root: Path, prefix: str) -> Path:
    return next(p for p in root.iterdir() if p.name.startswith(prefix))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def _manifest(root: Path, change) -> None:
    m = json.loads((root / "manifest.json").read_text())
    change(m)
    (root / "manifest.json").write_text(json.dumps(m))


DAMAGE = {
    "faiss truncated": lambda r: os.truncate(_file(r, "vectors-"), 100),
    "faiss empty": lambda r: os.truncate(_file(r, "vectors-"), 0),
    "faiss header flipped": lambda r: _flip(_file(r, "vectors-"), 3),
    "faiss tail flipped": lambda r: _flip(_file(r, "vectors-"), -5),
    "faiss replaced by text": lambda r: _file(r, "vectors-").write_text("hello"),
    "faiss deleted": lambda r: _file(r, "vectors-").unlink(),
    "sqlite truncated": lambda r: os.truncate(_file(r, "store-"), 2048),
    "sqlite header flipped": lambda r: _flip(_file(r, "store-"), 10),
    "sqlite replaced by faiss": lambda r: shutil.copy(_file(r, "vectors-"), _file(r, "store-")),
    "sqlite deleted": lambda r: _file(r, "store-").unlink(),
    "bm25 data truncated": lambda r: os.truncate(_file(r, "lexical-") / "bm25_data.npy", 60),
    "bm25 vocab garbage": lambda r: (_file(r, "lexical-") / "bm25_vocab.json").write_text("{not json"),
    "bm25 manifest deleted": lambda r: (_file(r, "lexical-") / "bm25.json").unlink(),
    "doc bm25 indptr flipped": lambda r: _flip(_file(r, "doclexical-") / "bm25_indptr.npy", 200),
    "manifest garbage": lambda r: (r / "manifest.json").write_bytes(b"\x00\xff garbage"),
    "manifest empty": lambda r: (r / "manifest.json").write_text(""),
    "manifest foreign json": lambda r: (r / "manifest.json").write_text('{"format": "chroma"}'),
    "manifest future version": lambda r: _manifest(r, lambda m: m.update(format_version=99)),
    "manifest path escape": lambda r: _manifest(r, lambda m: m["vectors"].update(file="../../etc/passwd")),
    "manifest without checksums": lambda r: _manifest(r, lambda m: m.pop("files")),
    "manifest wrong dimension": lambda r: _manifest(r, lambda m: m["model"].update(dimension=7)),
    "manifest wrong counts": lambda r: _manifest(r, lambda m: m["counts"].update(passages=3)),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from conftest import FakeHashEmbedder

    root = tmp_path_factory.mktemp("pristine")
    build_index(DOCS, root, embedder=FakeHashEmbedder())
    return root


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_index_is_a_clear_error(kind, pristine, tmp_path):
    root = tmp_path / "idx"
    shutil.copytree(pristine, root)
    DAMAGE[kind](root)
    out = subprocess.run([RAGKIT, "info", "--verify", "--index", str(root)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, (kind, out.returncode, out.stdout, out.stderr)
    assert out.stderr.startswith("ragkit: error:") and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr
