"""Updates embed and cache passages with the backend the index records, not the environment's.

Real model: the packaged all-MiniLM-L6-v2, whose passages are embedded by its int8 ONNX export
by default (``auto``) or by torch (``RAGKIT_PASSAGE_BACKEND=torch``).
"""

from __future__ import annotations

import numpy as np

from ragkit import Document, Index, build_index, update_index
from ragkit.encoders.registry import BACKEND_ENV
from ragkit.format.manifest import read_manifest

DOCS = [
    Document(id=f"d{i}", title=title, text=text)
    for i, (title, text) in enumerate([
        ("Parks", "Thousands of trees were planted in the city parks this spring, and new paths were laid."),
        ("Metro", "A new metro station opens in the south of the city in December, with two exits."),
        ("Tech parks", "Technology parks attracted investors and created new jobs for engineers."),
        ("Rivers", "The river embankment was rebuilt with cycle lanes and places to sit by the water."),
    ])
]
NEW = [
    Document(id="n1", title="Libraries", text="City libraries now open on Sundays and lend e-books to every reader."),
    Document(id="n2", title="Buses", text="Electric buses replaced diesel ones on twelve routes across the centre."),
]


def _vectors(root) -> np.ndarray:
    with Index.open(root) as idx:
        return idx.vectors.reconstruct(np.arange(len(idx)))


def test_update_then_force_rebuild_embeds_nothing_with_the_int8_backend(tmp_path, monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    root = tmp_path / "index"
    build_index(DOCS, root)
    assert read_manifest(root)["model"]["passage_backend"]["name"] == "onnx-int8"
    assert update_index(root, add=NEW).embedded > 0
    rebuilt = build_index(DOCS + NEW, root, force=True)
    assert rebuilt.embedded == 0, "the update must cache its int8 vectors under the int8 key"


def test_update_uses_the_recorded_backend_not_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "torch")
    root, fresh = tmp_path / "index", tmp_path / "fresh"
    build_index(DOCS, root)
    build_index(DOCS + NEW, fresh)
    assert read_manifest(root)["model"]["passage_backend"]["name"] == "torch"
    monkeypatch.delenv(BACKEND_ENV)  # auto would pick int8 for this model
    update_index(root, add=NEW)
    assert read_manifest(root)["model"]["passage_backend"]["name"] == "torch"
    # float32 vectors agree to ~1e-7 between torch and its ONNX export; int8 ones only to ~1e-1
    assert np.abs(_vectors(root) - _vectors(fresh)).max() < 1e-3
