"""navec-ru, the static Russian model built from natasha's navec vectors.

The real model is built once per session into a temporary cache (about 10-25 s) and loaded with a
plain ``SentenceTransformer(path)``, offline. The recipe itself is also checked on a tiny navec
archive made here (seeded), where a rebuild is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragkit.encoders.static import BUILD_INFO, NAME, VERSION, navec_archive
from ragkit.encoders.static_build import build_static_model, ensure_static_model
from ragkit.errors import InvalidArgumentError, ModelLoadError

VERSIONED = f"{NAME}-v{VERSION}"


def _archive_or_skip() -> Path:
    try:
        return navec_archive()
    except ModelLoadError as exc:
        pytest.skip(f"natasha's navec vectors are absent: {exc}")


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private RAGKIT_CACHE holding the real navec-ru, built once for the session."""
    _archive_or_skip()
    root = tmp_path_factory.mktemp("ragkit-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGKIT_CACHE", str(root))
        ensure_static_model()
    return root


@pytest.fixture
def cache(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAGKIT_CACHE", str(cache_root))
    return cache_root


@pytest.fixture(scope="session")
def model_dir(cache_root: Path) -> Path:
    return cache_root / "models" / VERSIONED


@pytest.fixture(scope="session")
def st_model(model_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


def _cos(model, a: str, b: str) -> float:
    va, vb = model.encode([a, b], convert_to_numpy=True).astype(np.float64)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


# ---------------------------------------------------------------------------- the folder


def test_folder_is_a_plain_sentence_transformers_model(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert {"modules.json", "model.safetensors", "tokenizer.json", "config_sentence_transformers.json", BUILD_INFO} <= names
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["StaticEmbedding"]
    assert all(m["type"].startswith("sentence_transformers.") for m in modules)  # no custom code
    info = json.loads((model_dir / BUILD_INFO).read_text(encoding="utf-8"))
    assert (info["name"], info["version"], info["dimension"]) == (NAME, VERSION, 300)
    assert info["params"]["window"] == 256
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(f".{VERSIONED}.tmp")]


def test_loads_offline_as_a_static_embedding(st_model) -> None:
    from tokenizers import Tokenizer

    assert type(st_model[0]).__name__ == "StaticEmbedding"
    assert st_model.encode(["слово"], convert_to_numpy=True).shape == (1, 300)
    assert isinstance(st_model.tokenizer, Tokenizer)
    assert st_model.tokenizer.truncation["max_length"] == 256


@pytest.mark.parametrize(
    ("word", "near", "far"),
    [
        ("москва", "столица", "банан"),
        ("рубль", "доллар", "кошка"),
        ("врач", "больница", "гитара"),
        ("футбол", "матч", "парламент"),
        ("президент", "премьер", "огурец"),
    ],
)
def test_known_neighbours(st_model, word: str, near: str, far: str) -> None:
    assert _cos(st_model, word, near) > _cos(st_model, word, far) + 0.1


def test_sentences_about_the_same_thing_are_closer(st_model) -> None:
    query = "Какой город является столицей России?"
    moscow = "Москва — крупнейший город страны, здесь работают правительство и парламент."
    fruit = "Бананы богаты калием, их выращивают в тропиках и везут в северные страны."
    assert _cos(st_model, query, moscow) > _cos(st_model, query, fruit)


def test_case_yo_and_stress_marks_do_not_matter(st_model) -> None:
    texts = ["Ёлка в Москве", "елка в москве", "ЁЛКА В МОСКВЕ", "Ёлка в Москве́", "Е\u0308лка в Москве"]
    vectors = st_model.encode(texts, convert_to_numpy=True)
    for v in vectors[1:]:
        np.testing.assert_array_equal(v, vectors[0])


def test_unknown_word_forms_back_off_to_their_stem(st_model) -> None:
    vocab = st_model.tokenizer.get_vocab()
    for form, lemma in [("суперкомпьютерами", "суперкомпьютер"), ("блокчейнами", "блокчейн")]:
        assert form not in vocab and lemma in vocab
        assert _cos(st_model, form, lemma) > _cos(st_model, form, "огурец") + 0.2
    assert "губернаторствовавшими" not in vocab
    assert st_model.tokenizer.encode("губернаторствовавшими").tokens[0] == "губернаторств"  # a stem entry
    # Numbers and foreign scripts are unknown: a zero vector, not a wrong one.
    assert not np.any(st_model.encode(["1876 ☃"], convert_to_numpy=True))


def test_output_is_deterministic(st_model) -> None:
    rng = np.random.default_rng(7)
    words = ["газета", "выборы", "налог", "театр", "нефть", "школа", "мост", "суд", "завод", "поезд"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 40)))) for _ in range(53)]
    once = st_model.encode(texts, batch_size=8, convert_to_numpy=True)
    again = st_model.encode(texts[::-1], batch_size=53, convert_to_numpy=True)[::-1]
    np.testing.assert_array_equal(once, again)


def test_token_counts_and_offsets_for_the_chunker(st_model) -> None:
    from ragkit.ingest.tokens import HFTokenCounter

    counter = HFTokenCounter(st_model.tokenizer)
    text = "«Ёлка», сказал он, — в Москве́ 1876 года!"
    assert counter.special_tokens == 0
    assert counter.count([text, "", "…"]) == [7, 0, 0]  # punctuation is not a token
    pieces = [text[s:e] for s, e in counter.offsets(text)]
    # The stress mark is dropped by the normaliser, so the token ends before it.
    assert pieces == ["Ёлка", "сказал", "он", "в", "Москве", "1876", "года"]
    assert counter.count(["слово " * 300]) == [300]  # the counter does not truncate


def test_static_encoder_gives_the_sentence_transformers_vectors(st_model, model_dir: Path) -> None:
    from ragkit.encoders.static import StaticEncoder, is_static_model

    assert is_static_model(model_dir) and not is_static_model(model_dir.parent)
    encoder = StaticEncoder(model_dir)
    assert (encoder.get_embedding_dimension(), encoder.max_seq_length) == (300, 256)
    texts = ["Москва — столица России.", "", "1876", "суперкомпьютерами " * 400, "Ёлка, банан и рубль"]
    ours = encoder.encode(texts, batch_size=2)
    theirs = st_model.encode(texts, convert_to_numpy=True).astype(np.float32)
    assert ours.dtype == np.float32 and ours.shape == (5, 300)
    np.testing.assert_array_equal(ours[1], 0.0)
    np.testing.assert_array_equal(ours[2], 0.0)
    for a, b in zip(ours[[0, 3, 4]], theirs[[0, 3, 4]]):
        assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99999
    np.testing.assert_array_equal(encoder.encode("Москва"), encoder.encode(["Москва"])[0])


def test_static_encoder_needs_no_torch(model_dir: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from ragkit.encoders.static import StaticEncoder; "
        f"v = StaticEncoder({str(model_dir)!r}).encode(['Москва']); "
        "assert v.shape == (1, 300) and v.any(); "
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------- ragkit


def test_resolve_model_short_name(cache: Path, model_dir: Path) -> None:
    from ragkit.encoders.embedder import resolve_model, same_model

    assert resolve_model("navec-ru") == (VERSIONED, str(model_dir))
    assert resolve_model(" NAVEC-RU ") == (VERSIONED, str(model_dir))
    assert resolve_model(VERSIONED) == (VERSIONED, str(model_dir))
    assert same_model(VERSIONED, "navec-ru")
    assert same_model(VERSIONED, None)  # None: whatever the index has
    with pytest.raises(ModelLoadError, match="rebuild the index"):
        resolve_model(f"{NAME}-v{VERSION + 100}")
    assert resolve_model("navec-russian") == ("navec-russian", "navec-russian")  # not ours


def test_ensure_reuses_the_cache(cache: Path, model_dir: Path) -> None:
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert ensure_static_model() == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_ragkit_round_trip(cache: Path, tmp_path: Path) -> None:
    import ragkit
    from ragkit.documents import Document

    docs = [
        Document(id="moscow", title="Москва", text="Москва — столица России. В городе работают правительство, "
                 "Государственная дума и десятки университетов."),
        Document(id="bananas", title="Бананы", text="Бананы растут в тропиках. Эти фрукты богаты калием и "
                 "сахаром, их везут на кораблях."),
        Document(id="football", title="Футбол", text="Сборная проиграла матч со счетом 0:2, тренер ушел в "
                 "отставку после чемпионата."),
    ]
    result = ragkit.build_index(docs, tmp_path / "index", model="navec-ru")
    assert result.passages == 3
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["name"] == VERSIONED
    assert manifest["model"]["dimension"] == 300
    assert manifest["chunker"]["max_tokens"] == 256
    with ragkit.Index.open(tmp_path / "index") as idx:
        for query, expected in [
            ("главный город страны и его парламент", "moscow"),
            ("тропические фрукты", "bananas"),
            ("поражение команды и отставка тренера", "football"),
        ]:
            assert idx.search(query, k=3, mode="dense")[0].doc_id == expected
    with pytest.raises(ragkit.ModelMismatchError):
        ragkit.Index.open(tmp_path / "index", model="all-minilm-l6-v2")


# ---------------------------------------------------------------------------- the recipe


def _tiny_archive(path: Path) -> Path:
    """A navec archive of 60 words (8 dimensions), written with navec itself; seeded."""
    from navec import Navec
    from navec.meta import Meta
    from navec.pq import PQ
    from navec.vocab import Vocab

    rng = np.random.default_rng(2024)
    stems = ["город", "дом", "стол", "мост", "лес", "сад", "завод", "театр", "поезд", "банк"]
    words = [s + e for s in stems for e in ("", "а", "ом", "ами")]
    words += ["ёлка", "елка", "северо-западный", "new", "york", "в", "и", "на", "с", "что"]
    words += [f"слово{chr(0x430 + i)}" for i in range(8)] + ["<unk>", "<pad>"]
    counts = [int(c) for c in rng.integers(100, 100_000, size=len(words) - 2)] + [0, 0]
    qdim, centroids, sub = 4, 16, 2
    codes = rng.standard_normal((qdim, centroids, sub)).astype(np.float32)
    indexes = rng.integers(0, centroids, size=(len(words), qdim)).astype(np.uint8)
    navec = Navec(Meta("tiny", 1), Vocab(words, counts), PQ(len(words), qdim * sub, qdim, centroids, indexes, codes))
    navec.dump(str(path))
    return path


def test_recipe_on_a_tiny_archive_is_reproducible(tmp_path: Path) -> None:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    archive = _tiny_archive(tmp_path / "tiny.tar")
    a = build_static_model(tmp_path / "a", archive=archive, window=64)
    b = build_static_model(tmp_path / "b", archive=archive, window=64)
    for name in ("model.safetensors", "tokenizer.json", "modules.json", BUILD_INFO):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    tok = Tokenizer.from_file(str(a / "tokenizer.json"))
    vocab = tok.get_vocab()
    weights = load_file(str(a / "model.safetensors"))["embedding.weight"]
    assert weights.shape == (tok.get_vocab_size(), 8) and weights.dtype == np.float16
    assert vocab["[UNK]"] == 0 and not weights[0].any()
    assert "елка" in vocab and "ёлка" not in vocab  # merged
    assert "северо-западный" not in vocab and "<unk>" not in vocab and "<pad>" not in vocab
    assert "##ами" in vocab and not weights[vocab["##ами"]].any()  # suffix pieces carry nothing
    assert tok.encode("Городами").tokens == ["городами"]
    assert tok.encode("Городок").tokens[0] == "город"  # unknown form: longest known prefix
    info = json.loads((a / BUILD_INFO).read_text(encoding="utf-8"))
    assert info["counts"]["words"] == 40 + 1 + 2 + 5 + 8


def test_build_refuses_an_existing_folder_and_bad_settings(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(InvalidArgumentError):
        build_static_model(tmp_path / "taken", archive=tmp_path / "none.tar")
    with pytest.raises(InvalidArgumentError):
        build_static_model(tmp_path / "new", archive=tmp_path / "none.tar", window=2)
    with pytest.raises(ModelLoadError):
        build_static_model(tmp_path / "new", archive=tmp_path / "none.tar")
    (tmp_path / "bad.tar").write_bytes(b"not a tar archive")
    with pytest.raises(ModelLoadError):
        build_static_model(tmp_path / "new", archive=tmp_path / "bad.tar")
    (tmp_path / "bad.tar").unlink()
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_incomplete_cache_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="no complete"):
        ensure_static_model(tmp_path / "half")
