"""The sentence-transformers backend: any model name or local path the user has (torch).

``import sentence_transformers`` costs seconds, so the model loads on first use only; a
folder of the static navec-ru model loads as :class:`ragkit.encoders.static.StaticEncoder`
instead (numpy, no torch).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.errors import ModelLoadError

if TYPE_CHECKING:
    from ragkit.ingest.tokens import HFTokenCounter

# Keys under which sentence-transformers model configs store the passage-side prompt.
PASSAGE_PROMPT_KEYS = ("document", "passage", "corpus", "doc")


def load_model(load_path: str, name: str, device: str = "cpu") -> Any:  # noqa: ANN401
    """A SentenceTransformer (or a StaticEncoder for a static model folder), offline."""
    # Nothing may be fetched from a hub at run time; a user who wants downloads sets
    # HF_HUB_OFFLINE=0 explicitly. Progress bars of transformers' loader are noise here.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ragkit.encoders.static import StaticEncoder, is_static_model

    if is_static_model(load_path):
        return StaticEncoder(load_path, name=name)
    try:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(load_path, device=device)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot load embedding model {name!r} (offline; give a local path or an "
            f"installed model): {first[:200]}"
        ) from exc


def model_prompts(model: Any) -> tuple[str, str]:  # noqa: ANN401
    """The (query, passage) prompts a sentence-transformers model's config declares."""
    prompts = getattr(model, "prompts", None) or {}
    passage = next((prompts[k] for k in PASSAGE_PROMPT_KEYS if prompts.get(k)), "")
    return prompts.get("query", "") or "", passage or ""


class SentenceTransformerEncoder:
    """:class:`ragkit.encoders.base.Encoder` over a loaded ``SentenceTransformer``."""

    workers = 1
    cache_tag = ""

    def __init__(self, model: Any, name: str) -> None:  # noqa: ANN401
        self.model = model
        self.name = name

    @property
    def dimension(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_tokens(self) -> int:
        """The model's window in tokens, special tokens included (256 where a model has none)."""
        window = getattr(self.model, "max_seq_length", None)
        return int(window) if isinstance(window, int) and 0 < window < 1_000_000 else 256

    def token_counter(self) -> HFTokenCounter:
        from ragkit.ingest.tokens import HFTokenCounter

        try:
            return HFTokenCounter.from_transformers(self.model.tokenizer)
        except TypeError as exc:
            raise ModelLoadError(f"model {self.name!r} has no fast tokenizer to count tokens with") from exc

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        )

    def describe(self) -> dict[str, Any]:
        return {"name": "torch", "precision": "float32"}
