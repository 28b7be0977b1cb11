"""One contract that every encoder backend keeps (:class:`ragkit.encoders.base.Encoder`).

Real backends: the static navec-ru model (numpy), the packaged all-MiniLM-L6-v2 through
sentence-transformers (torch), its float32 ONNX export and its int8 passage encoder
(onnxruntime). A new backend joins by adding one fixture parameter.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragkit.encoders.base import Encoder, embed

TEXTS = ["Technology parks of Moscow attract investors.", "Технопарки Москвы привлекают инвесторов.", "",
         "a " * 600, "Числа 3.14 и 2026-01-01, ёлочки «кавычки»."]
# int8 activations are quantised per batch: in one encode_batch call a text's vector depends
# slightly on its batch-mates (embed() gives the int8 encoder one text a batch: its batch_limit).
TOLERANCE = {"onnx-int8": 0.97}


@pytest.fixture(scope="module", params=["static", "sentence-transformers", "onnx", "onnx-int8"])
def encoder(request, real_embedder, tmp_path_factory) -> tuple[str, Encoder]:
    kind = request.param
    if kind == "static":
        from ragkit.encoders.embedder import Embedder

        return kind, Embedder("navec-ru").passage_encoder()
    if kind == "sentence-transformers":
        return kind, real_embedder._own_encoder()
    if kind == "onnx":
        from ragkit.encoders.onnx_export import export_onnx
        from ragkit.encoders.onnx_runtime import OnnxEncoder

        folder = tmp_path_factory.mktemp("contract") / "onnx"
        export_onnx(real_embedder.model, folder, model_name=real_embedder.name)
        return kind, OnnxEncoder.load(folder)
    from ragkit.encoders.embedder import Embedder

    return kind, Embedder(backend="onnx-int8").passage_encoder()


def test_facts(encoder):
    kind, enc = encoder
    assert isinstance(enc, Encoder), kind
    assert isinstance(enc.name, str) and enc.name
    assert isinstance(enc.dimension, int) and enc.dimension > 0
    assert isinstance(enc.max_tokens, int) and enc.max_tokens > 8
    assert isinstance(enc.workers, int) and enc.workers >= 1
    assert isinstance(enc.cache_tag, str)
    assert (enc.cache_tag != "") == (kind == "onnx-int8"), "only non-float32 vectors get their own cache key"
    description = enc.describe()
    assert isinstance(description, dict) and description.get("name")
    json.dumps(description)


def test_encode_batch_gives_float32_rows_in_order(encoder):
    kind, enc = encoder
    rows = enc.encode_batch(list(TEXTS))
    assert rows.dtype == np.float32 and rows.shape == (len(TEXTS), enc.dimension)
    assert np.isfinite(rows).all()
    for i in (0, 1, 4):
        alone = enc.encode_batch([TEXTS[i]])[0]
        cosine = float(alone @ rows[i] / (np.linalg.norm(alone) * np.linalg.norm(rows[i])))
        assert cosine > TOLERANCE.get(kind, 0.9999), (kind, i, cosine)


def test_embed_normalises_and_keeps_input_order(encoder):
    kind, enc = encoder
    vectors = embed(enc, TEXTS, batch_size=2)
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms[[0, 1, 3, 4]], 1.0, atol=1e-5)
    assert norms[2] <= 1.0 + 1e-5  # the empty text: a unit vector, or zero for a model with no token
    reversed_ = embed(enc, TEXTS[::-1], batch_size=2)[::-1]
    assert np.min(np.sum(vectors * reversed_, axis=1)[[0, 1, 3, 4]]) > 0.9999


def test_a_batch_limit_makes_each_vector_its_texts_alone(encoder):
    """A backend whose vectors depend on batch-mates (int8) says so with batch_limit 1; embed()
    then gives the same vector to a text whatever else is embedded with it."""
    kind, enc = encoder
    limit = getattr(enc, "batch_limit", None)
    assert (limit == 1) == (kind == "onnx-int8"), kind
    if limit is None:
        return
    together = embed(enc, TEXTS, batch_size=32)
    for i, text in enumerate(TEXTS):
        np.testing.assert_array_equal(embed(enc, [text])[0], together[i])


def test_token_counter_counts_what_the_encoder_reads(encoder):
    _, enc = encoder
    counter = enc.token_counter()
    short, long = counter.count(["Moscow parks", "Moscow parks " * 50])
    assert 0 < short < long
    assert counter.special_tokens >= 0
