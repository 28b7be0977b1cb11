"""The torch-free ONNX query encoder against the sentence-transformers model it was exported from.

Real parts: the packaged all-MiniLM-L6-v2, a real ONNX export into tmp, real onnxruntime, real
FAISS, and a real subprocess for the "no torch at query time" claim. Text is fixed or drawn
from a seeded generator.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragkit.encoders.onnx_export import export_onnx
from ragkit.encoders.onnx_runtime import CONFIG_NAME, OnnxEncoder, _pool
from ragkit.errors import OnnxEncoderError, OnnxExportUnsupported
from ragkit.errors import IndexFormatError, RagkitError
from ragkit.vectors.exact import l2_normalize
from ragkit.vectors.faiss_index import VectorIndex

HEAVY = ("torch", "transformers", "sentence_transformers")
LONG_EN = (
    "Retrieval systems cut long articles into passages, embed each passage, and compare "
    "the query vector with every passage vector by cosine similarity. "
) * 14  # ~350 tokens: beyond the 256-token window, so truncation is exercised
LONG_RU = "Технопарки Москвы предоставляют резидентам льготы, лаборатории и офисы. " * 25

QUERIES = [
    # English questions and keyword queries
    "what are the technology parks of Moscow?",
    "How does a rocket engine produce thrust?",
    "best way to bake sourdough bread at home",
    "symptoms of vitamin D deficiency in adults",
    "who won the 2018 FIFA World Cup",
    "python list comprehension vs generator expression",
    "climate change effects on arctic sea ice",
    "cat purring frequency healing",
    "interest rate decision central bank inflation",
    "history of the Byzantine empire",
    "How many moons does Jupiter have?",
    "machine learning model for text classification",
    "cheap flights from London to Tokyo in March",
    "protein folding alphafold accuracy",
    "GPU vs CPU for matrix multiplication",
    # Russian
    "технопарки Москвы",
    "как испечь хлеб на закваске",
    "ключевая ставка Центрального банка",
    "история Византийской империи",
    "чемпионат мира по футболу 2018",
    "Сколько спутников у Юпитера?",
    "ёлочки «кавычки» и — тире",
    # mixed script, case, punctuation, numbers, code
    "Moscow технопарк residents льготы",
    "WHAT IS THE CAPITAL OF FRANCE",
    "e = mc^2 and the speed of light c = 299792458 m/s",
    "def f(x): return x ** 2  # square",
    "2026-01-01 12:00 UTC+3",
    "naïve café résumé Ångström",
    "ĐŠŽ čćžš ŁÓDŹ",
    "東京の天気は？",
    "مرحبا بالعالم",
    "🚀 launch 🌕 moon",
    "supercalifragilisticexpialidocious" * 3,
    "a" * 300,
    "tab\tseparated\tquery  with   spaces",
    "line one\nline two\r\nline three",
    # long: truncation
    LONG_EN,
    LONG_RU,
    LONG_EN + LONG_RU,
    # empty-ish
    "",
    " ",
    "?",
    "a",
    ".",
    "\n\t",
    "[CLS] [SEP] [PAD]",
    "the",
    "и",
    "1",
    "%%%",
]

SUBJECTS = [
    "Cats are small domesticated felines that purr and hunt mice.",
    "A rocket engine burns propellant to produce thrust for spaceflight.",
    "Bread is baked from flour, water and yeast in a hot oven.",
    "The central bank raised its key interest rate to fight inflation.",
    "Jupiter has dozens of moons, the largest of which is Ganymede.",
    "Arctic sea ice has been shrinking as global temperatures rise.",
    "The Byzantine empire lasted for a thousand years after Rome fell.",
    "France won the 2018 FIFA World Cup in Moscow.",
    "Vitamin D deficiency can cause fatigue and bone pain.",
    "Graphics processors multiply matrices much faster than CPUs.",
    "Python generators produce values lazily, one at a time.",
    "AlphaFold predicts protein structures with high accuracy.",
    "Tokyo is the capital of Japan and its largest city.",
    "Sourdough uses a fermented starter instead of commercial yeast.",
    "Technology parks in Moscow give residents tax breaks and labs.",
    "Технопарки Москвы дают резидентам налоговые льготы.",
    "Центральный банк повысил ключевую ставку.",
    "Юпитер — крупнейшая планета Солнечной системы.",
    "Хлеб на закваске печётся дольше обычного.",
    "Сборная Франции выиграла чемпионат мира 2018 года.",
    "The speed of light in vacuum is exactly 299,792,458 metres per second.",
    "Honey bees communicate the location of flowers by dancing.",
    "The Amazon rainforest produces a large share of the world's oxygen.",
    "Chess engines evaluate millions of positions per second.",
    "Volcanic eruptions can cool the climate for several years.",
    "The Great Wall of China stretches thousands of kilometres.",
    "Electric cars store energy in lithium-ion batteries.",
    "Shakespeare wrote Hamlet around the year 1600.",
    "Coffee contains caffeine, a stimulant of the nervous system.",
    "The Pacific is the largest and deepest ocean on Earth.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Mount Everest is the highest mountain above sea level.",
    "Bitcoin transactions are recorded on a public blockchain.",
    "Penguins live almost exclusively in the southern hemisphere.",
    "The printing press spread literacy across Europe.",
    "Black holes bend light with their enormous gravity.",
    "Olive oil is a staple of the Mediterranean diet.",
    "Wind turbines convert moving air into electricity.",
    "The human heart beats about a hundred thousand times a day.",
    "Glaciers carve valleys as they slowly move downhill.",
]


FRAMES = ["{}", "In short: {}", "{} Experts agree.", "Reportedly, {}", "{} This is well known.",
          "Fact: {}", "{} Read more below.", "Note that {}", "{} (updated)", "Сводка: {}"]


def _passages(n: int = 200) -> list[str]:
    """n distinct one-sentence passages: every subject in several frames, seeded order."""
    rng = random.Random(20260101)
    pairs = [(s, f) for s in SUBJECTS for f in FRAMES]
    rng.shuffle(pairs)
    return [frame.format(subject) for subject, frame in pairs[:n]]


@pytest.fixture(scope="module")
def st_model(real_embedder):
    return real_embedder.model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, st_model) -> Path:
    parent = tmp_path_factory.mktemp("onnx")
    return export_onnx(st_model, parent / "encoder-000001", model_name="sentence-transformers/all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def encoder(exported) -> OnnxEncoder:
    return OnnxEncoder.load(exported)


def _st_vectors(model, texts: list[str]) -> np.ndarray:
    # Batches of 8: the few 256-token queries pad 8 rows, not 32.
    return l2_normalize(model.encode(texts, batch_size=8, convert_to_numpy=True, show_progress_bar=False))


@pytest.fixture(scope="module")
def st_queries(st_model) -> np.ndarray:
    """The reference: sentence-transformers' (torch) vectors of QUERIES."""
    return _st_vectors(st_model, QUERIES)


# -- export ---------------------------------------------------------------------------------
def test_export_writes_a_complete_folder_atomically(exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted([CONFIG_NAME, "model.onnx", "model.onnx.data", "tokenizer.json"])
    assert [p.name for p in exported.parent.iterdir()] == [exported.name]  # no temporary left behind
    config = json.loads((exported / CONFIG_NAME).read_text())
    assert config["model"] == {
        "name": "sentence-transformers/all-MiniLM-L6-v2", "architecture": "BertModel", "model_type": "bert",
        "dimension": 384, "max_seq_length": 256, "normalize": True,
    }
    assert config["pooling"] == ["mean"]
    assert config["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert config["onnx"]["opset"] == 17 and config["onnx"]["precision"] == "float32"
    assert config["check"]["min_cosine_to_torch"] >= 0.9999
    for name, facts in config["files"].items():
        assert (exported / name).stat().st_size == facts["bytes"]
        assert len(facts["sha256"]) == 64


def test_tokenizer_matches_sentence_transformers(encoder, st_model):
    """Same ids and mask as the model's own tokenisation (truncation at 256, padding, lower-casing)."""
    texts = [q for q in QUERIES if q]
    features = st_model.tokenize(texts)
    ids = features["input_ids"].numpy()
    ours = encoder._tokenizer.encode_batch(texts)
    assert ids.shape == (len(texts), 256)  # the long queries fill the window, no more
    assert [e.ids for e in ours] == ids.tolist()
    assert [e.attention_mask for e in ours] == features["attention_mask"].numpy().tolist()


# -- vectors --------------------------------------------------------------------------------
def test_query_vectors_match_sentence_transformers(encoder, st_queries):
    reference = st_queries
    batched = l2_normalize(encoder.encode(QUERIES, batch_size=8))
    one_by_one = l2_normalize(np.concatenate([encoder.encode([q]) for q in QUERIES]))
    for got in (batched, one_by_one):
        cosines = (got * reference).sum(axis=1)
        assert cosines.min() >= 0.999, QUERIES[int(cosines.argmin())][:60]
        assert np.median(cosines) >= 0.99999


def test_same_top10_as_sentence_transformers_on_a_faiss_index(encoder, st_model, st_queries):
    passages = _passages()
    assert len(set(passages)) == 200
    index = VectorIndex.create(384, "Flat")
    index.add(np.arange(len(passages), dtype=np.int64), _st_vectors(st_model, passages))
    keep = [i for i, q in enumerate(QUERIES) if q.strip()]
    st_scores, st_ids = index.search(st_queries[keep], 10)
    onnx_scores, onnx_ids = index.search(l2_normalize(encoder.encode([QUERIES[i] for i in keep], batch_size=8)), 10)
    assert onnx_ids.tolist() == st_ids.tolist()
    np.testing.assert_allclose(onnx_scores, st_scores, atol=1e-4)


def test_encode_keeps_input_order_across_uneven_batches(encoder):
    texts = QUERIES[:23]
    whole = encoder.encode(texts, batch_size=64)
    uneven = encoder.encode(texts, batch_size=5)
    np.testing.assert_allclose(uneven, whole, atol=1e-5)
    assert whole.dtype == np.float32 and whole.shape == (23, 384)
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.encode("one string")


def test_vectors_are_not_normalised(encoder):
    norms = np.linalg.norm(encoder.encode(QUERIES[:5]), axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)  # MiniLM's mean-pooled vectors are longer than 1


@pytest.mark.parametrize("modes", [("mean",), ("cls",), ("max",), ("mean_sqrt_len_tokens",), ("cls", "mean", "max")])
def test_pooling_matches_sentence_transformers_pooling(modes):
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    rng = np.random.default_rng(7)
    tokens = rng.normal(size=(5, 9, 16)).astype(np.float32)
    lengths = [9, 1, 4, 7, 2]  # uneven, right-padded
    mask = np.array([[1] * n + [0] * (9 - n) for n in lengths], dtype=np.int64)
    pooling = Pooling(16, pooling_mode=modes[0] if len(modes) == 1 else modes)
    ref = pooling({"token_embeddings": torch.from_numpy(tokens), "attention_mask": torch.from_numpy(mask)})
    np.testing.assert_allclose(_pool(tokens, mask, modes), ref["sentence_embedding"].numpy(), rtol=1e-5, atol=1e-6)


# -- query time without torch ---------------------------------------------------------------
def test_query_process_never_imports_torch(exported, encoder):
    code = (
        "import json, sys\n"
        "from ragkit.encoders.onnx_runtime import OnnxEncoder\n"
        f"v = OnnxEncoder.load({str(exported)!r}).encode(['what are the technology parks of Moscow?'])\n"
        f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], 'v': v[0].tolist()}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=True)
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    here = encoder.encode(["what are the technology parks of Moscow?"])[0]
    np.testing.assert_allclose(np.array(result["v"], dtype=np.float32), here, rtol=1e-5, atol=1e-5)


# -- refusals and damage ----------------------------------------------------------------------
def test_unsupported_architectures_raise_a_ragkit_error(tmp_path, st_model):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    static = StaticEmbedding(st_model[0].tokenizer, embedding_dim=8)
    dense = SentenceTransformer(modules=[st_model[0], st_model[1], Dense(384, 32)], device="cpu")
    for model in (SentenceTransformer(modules=[static], device="cpu"), dense):
        with pytest.raises(OnnxExportUnsupported) as info:
            export_onnx(model, tmp_path / "encoder")
        assert isinstance(info.value, RagkitError) and isinstance(info.value, NotImplementedError)
    assert list(tmp_path.iterdir()) == []


def _partial_copy(src: Path, dst: Path) -> Path:
    """A cheap copy of an encoder folder: the 90 MB weights are hard-linked, not copied."""
    dst.mkdir()
    for f in src.iterdir():
        os.link(f, dst / f.name)
    return dst


def test_damaged_or_foreign_folders_are_clear_errors(tmp_path, exported):
    with pytest.raises(OnnxEncoderError, match="missing"):
        OnnxEncoder.load(tmp_path)
    broken = _partial_copy(exported, tmp_path / "no-weights")
    (broken / "model.onnx.data").unlink()
    with pytest.raises(OnnxEncoderError, match="model.onnx.data is missing"):
        OnnxEncoder.load(broken)
    old = _partial_copy(exported, tmp_path / "old-format")
    config = json.loads((old / CONFIG_NAME).read_text())
    (old / CONFIG_NAME).unlink()
    (old / CONFIG_NAME).write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(OnnxEncoderError, match="format version 99"):
        OnnxEncoder.load(old)
    wrong = _partial_copy(exported, tmp_path / "wrong-tokenizer")
    (wrong / "tokenizer.json").unlink()
    (wrong / "tokenizer.json").write_text("{}")
    with pytest.raises(OnnxEncoderError, match="tokenizer.json has the wrong size"):
        OnnxEncoder.load(wrong)
    assert issubclass(OnnxEncoderError, IndexFormatError)


def test_verify_checks_the_hashes(tmp_path, exported):
    assert OnnxEncoder.load(exported, verify=True).dimension == 384
    tampered = _partial_copy(exported, tmp_path / "tampered")
    text = (tampered / "tokenizer.json").read_text()
    (tampered / "tokenizer.json").unlink()
    (tampered / "tokenizer.json").write_text(text.replace('"[UNK]"', '"[UNX]"', 1))  # same size, other bytes
    OnnxEncoder.load(tampered)  # sizes alone do not see it
    with pytest.raises(OnnxEncoderError, match="SHA-256"):
        OnnxEncoder.load(tampered, verify=True)
