"""The embedder of an index: a query encoder and a passage encoder, with their prompts.

:class:`Embedder` picks its backends through :mod:`ragkit.encoders.registry` and embeds
through :func:`ragkit.encoders.base.embed` (batching and normalisation written once):

- the model's own backend (sentence-transformers, or numpy for the static navec-ru model),
  loaded on first use;
- queries: an index's exported ONNX encoder when it has one (``query_encoder=FOLDER``:
  onnxruntime + tokenizers, no torch), else the model;
- passages: the int8 ONNX export for models checked in int8 (:mod:`ragkit.encoders.int8`),
  else the model. The backend is recorded in the index manifest (``model.passage_backend``)
  and is part of the embedding-cache key, so vectors of two backends never mix in one index.

:class:`EncoderSpec` is the picklable recipe of an embedder: a worker process rebuilds the
same one from it (:meth:`EncoderSpec.build`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.encoders.base import Encoder, ProgressFn, embed
from ragkit.format.pinning import PinnedFolder, as_folder
from ragkit.encoders.registry import (
    BACKEND_ENV,
    DEFAULT_MODEL,
    INT8_RECIPE,
    PASSAGE_BACKENDS,
    cache_tag,
    choose_backend,
    resolve_model,
    same_model,
)

if TYPE_CHECKING:
    from ragkit.ingest.tokens import TokenCounter

__all__ = ["BACKEND_ENV", "DEFAULT_MODEL", "PASSAGE_BACKENDS", "Embedder", "EncoderSpec", "choose_backend",
           "resolve_model", "same_model"]


@dataclass(frozen=True, kw_only=True)
class EncoderSpec:
    """Everything needed to rebuild an :class:`Embedder` in another process (picklable)."""

    model: str
    backend: str = "torch"  # the passage backend: torch or onnx-int8
    device: str = "cpu"
    batch_size: int = 32
    query_prompt: str | None = None  # None: the model's own
    passage_prompt: str | None = None
    query_encoder: str | None = None  # an exported ONNX query encoder folder, if any

    def build(self) -> Embedder:
        return Embedder(self.model, query_prompt=self.query_prompt, passage_prompt=self.passage_prompt,
                        batch_size=self.batch_size, device=self.device, backend=self.backend,
                        query_encoder=self.query_encoder)


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
        query_encoder: str | os.PathLike[str] | PinnedFolder | None = None,
    ) -> None:
        self.name, self._load_path = resolve_model(model)
        self._query_prompt = query_prompt
        self._passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.device = device
        self.passage_backend = choose_backend(backend, self.name, device)
        self._query_folder = as_folder(query_encoder) if query_encoder is not None else None
        self._own: Encoder | None = None
        self._query: Encoder | None = None
        self._passage: Encoder | None = None

    # -- backends --------------------------------------------------------------------------
    @property
    def model(self) -> Any:  # noqa: ANN401
        """The loaded model: a ``SentenceTransformer``, or a ``StaticEncoder`` for navec-ru."""
        return self._own_encoder().model if hasattr(self._own_encoder(), "model") else self._own_encoder()

    def _own_encoder(self) -> Encoder:
        if self._own is None:
            from ragkit.encoders.sentence_transformers import (
                SentenceTransformerEncoder,
                load_model,
            )
            from ragkit.encoders.static import StaticEncoder

            model = load_model(self._load_path, self.name, self.device)
            self._own = model if isinstance(model, StaticEncoder) else SentenceTransformerEncoder(model, self.name)
        return self._own

    @property
    def exports_onnx(self) -> bool:
        """Whether the model is a sentence-transformers (torch) model that can be exported to ONNX."""
        return self._query_folder is None and hasattr(self._own_encoder(), "model")

    def query_encoder(self) -> Encoder:
        if self._query is None:
            if self._query_folder is not None:
                from ragkit.encoders.onnx_runtime import OnnxEncoder

                self._query = OnnxEncoder.load(self._query_folder)
            else:
                self._query = self._own_encoder()
        return self._query

    def passage_encoder(self) -> Encoder:
        """The passage backend: the int8 ONNX export (exported into the cache on first use) or the model."""
        if self._passage is None:
            if self.passage_backend == "onnx-int8":
                from ragkit.encoders.int8 import int8_encoder

                self._passage = int8_encoder(self.name, self._load_path, lambda: self._own_encoder().model)
            elif self._own is None and self._query_folder is not None:
                self._passage = self.query_encoder()  # the float32 export gives the model's vectors
            else:
                self._passage = self._own_encoder()
        return self._passage

    def _facts(self) -> Encoder:
        """The encoder to read facts from without loading torch when an export is at hand."""
        return self._query or self._own or (self.query_encoder() if self._query_folder else self._own_encoder())

    # -- facts -----------------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        return int(self._facts().dimension)

    @property
    def max_tokens(self) -> int:
        """The model's window in tokens, special tokens included."""
        return int(self._facts().max_tokens)

    @property
    def query_prompt(self) -> str:
        if self._query_prompt is None:
            self._query_prompt = self._model_prompts()[0]
        return self._query_prompt

    @property
    def passage_prompt(self) -> str:
        if self._passage_prompt is None:
            self._passage_prompt = self._model_prompts()[1]
        return self._passage_prompt

    def _model_prompts(self) -> tuple[str, str]:
        from ragkit.encoders.sentence_transformers import model_prompts

        facts = self._facts()
        if hasattr(facts, "query_prompt"):  # an ONNX export records the prompts it was made with
            return facts.query_prompt, facts.passage_prompt  # type: ignore[attr-defined]
        return model_prompts(getattr(facts, "model", facts))

    def token_counter(self) -> TokenCounter:
        return self._facts().token_counter()

    @property
    def passage_cache_tag(self) -> str:
        """Extra embedding-cache key of the passage backend ("" for float32: the keys of old caches)."""
        return cache_tag(self.passage_backend)

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
            from ragkit.encoders.onnx_export import INT8_QUANTIZATION

            return {"name": "onnx-int8", "precision": "int8", "recipe": INT8_RECIPE, "runtime": "onnxruntime",
                    "quantization": INT8_QUANTIZATION}
        return {"name": "torch", "precision": "float32"}

    def spec(self) -> EncoderSpec:
        return EncoderSpec(model=self.name, backend=self.passage_backend, device=self.device, batch_size=self.batch_size,
                           query_prompt=self._query_prompt, passage_prompt=self._passage_prompt,
                           query_encoder=str(self._query_folder) if self._query_folder else None)

    # -- embedding -------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], prompt: str = "", progress: ProgressFn | None = None) -> np.ndarray:
        """Embed texts with the model itself (prompt prepended), unit length, in input order."""
        return embed(self._own_encoder(), texts, prompt, batch_size=self.batch_size, progress=progress)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return embed(self.query_encoder(), queries, self.query_prompt, batch_size=self.batch_size)

    def embed_passages(self, passages: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        encoder = self.passage_encoder() if passages else self._facts()
        return embed(encoder, passages, self.passage_prompt, batch_size=self.batch_size, progress=progress)
