"""Counting tokens with the embedding model's own tokenizer.

The chunker needs two things from a tokenizer: how many tokens a text becomes, and where
each token sits in the text. ``TokenCounter`` is that interface; ``HFTokenCounter`` implements
it over a Hugging Face ``tokenizers.Tokenizer`` (the fast tokenizer behind every
sentence-transformers model). ``tokenizers`` is imported only where it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import tokenizers

__all__ = ["HFTokenCounter", "TokenCounter"]


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens the way the embedding model will see them."""

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, without the special tokens the model adds around a sequence."""
        ...

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span ``(start, end)`` of each token (no special tokens), in order."""
        ...

    @property
    def special_tokens(self) -> int:
        """Tokens the model adds around one sequence (``[CLS]`` and ``[SEP]``: 2)."""
        ...


class HFTokenCounter:
    """A ``TokenCounter`` over a ``tokenizers.Tokenizer``.

    A tokenizer that truncates or pads is copied and those are switched off in the copy: a
    model's ``tokenizer.json`` often truncates (all-MiniLM-L6-v2 ships ``max_length=128``) and
    pads, which would make long texts look short. The caller's tokenizer is left unchanged (one
    that does neither is used as it is).
    Offsets are indices into the Python ``str`` (characters, not UTF-8 bytes).
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        import tokenizers

        if not isinstance(tokenizer, tokenizers.Tokenizer):
            raise TypeError(
                f"HFTokenCounter needs a tokenizers.Tokenizer, got {type(tokenizer).__name__}"
            )
        if tokenizer.truncation is None and tokenizer.padding is None:
            own = tokenizer  # nothing to switch off: no copy (a large vocabulary takes a while)
        else:
            own = tokenizers.Tokenizer.from_str(tokenizer.to_str())
            own.no_truncation()
            own.no_padding()
        self._tokenizer = own
        self._special_tokens = int(own.num_special_tokens_to_add(False))

    @classmethod
    def from_file(cls, tokenizer_json: str | Path) -> HFTokenCounter:
        """Load a ``tokenizer.json`` (as found in a sentence-transformers model folder)."""
        import tokenizers

        return cls(tokenizers.Tokenizer.from_file(str(tokenizer_json)))

    @classmethod
    def from_transformers(cls, tok: Any) -> HFTokenCounter:
        """Wrap a fast ``transformers`` tokenizer; slow (pure Python) tokenizers raise TypeError."""
        import tokenizers

        backend = getattr(tok, "backend_tokenizer", None)
        if not getattr(tok, "is_fast", False) or not isinstance(backend, tokenizers.Tokenizer):
            raise TypeError(
                f"{type(tok).__name__} is not a fast tokenizer (no tokenizers backend); "
                "load it with use_fast=True or pass its tokenizer.json to HFTokenCounter.from_file"
            )
        return cls(backend)

    @property
    def special_tokens(self) -> int:
        return self._special_tokens

    def count(self, texts: Sequence[str]) -> list[int]:
        batch = list(texts)
        if not batch:
            return []
        # encode_batch_fast (tokenizers >= 0.21) skips offset tracking; same ids as encode_batch.
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        encodings = encode(batch, add_special_tokens=False)
        return [len(enc.ids) for enc in encodings]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return [(int(start), int(end)) for start, end in encoding.offsets]
