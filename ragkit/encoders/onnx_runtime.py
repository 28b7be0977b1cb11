"""Running an exported encoder folder with onnxruntime + tokenizers: no torch.

The folder is written by :func:`ragkit.encoders.onnx_export.export_onnx` (see there for what
it holds and how exports are checked). :class:`OnnxEncoder` tokenises, runs the graph's token
embeddings and pools in numpy; vectors come out NOT normalised (ragkit normalises once, in
:func:`ragkit.encoders.base.embed`).
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.encoders.base import usable_cores
from ragkit.errors import OnnxEncoderError, OnnxExportUnsupported
from ragkit.format.checksums import sha256_file
from ragkit.format.manifest import read_versioned_json
from ragkit.format.pinning import PinnedFolder, as_folder

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

__all__ = ["CONFIG_NAME", "OnnxEncoder", "OnnxEncoderError", "OnnxExportUnsupported", "read_config"]

logger = logging.getLogger(__name__)

FORMAT = "ragkit-onnx-encoder"

FORMAT_VERSION = 1

CONFIG_NAME = "onnx_encoder.json"

MODEL_NAME = "model.onnx"

DATA_NAME = "model.onnx.data"

TOKENIZER_NAME = "tokenizer.json"

OUTPUT_NAME = "token_embeddings"

PRECISIONS = ("float32", "int8")

_POOLING_MODES = ("mean", "mean_sqrt_len_tokens", "cls", "max")

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _configure_tokenizer(tok: tokenizers.Tokenizer, max_len: int, truncation_side: str, padding_side: str,
                         pad_id: int, pad_token: str, pad_type_id: int) -> None:
    """Truncate to the model's window and pad to the longest text, as sentence-transformers does."""
    tok.enable_truncation(max_length=max_len, strategy="longest_first", direction=truncation_side)
    tok.enable_padding(direction=padding_side, pad_id=pad_id, pad_type_id=pad_type_id, pad_token=pad_token)


# -- query time: onnxruntime + tokenizers + numpy only ----------------------------------------
class OnnxEncoder:
    """Runs an exported encoder folder: tokenise, ONNX token embeddings, pool. No torch.

    Load with :meth:`load`. :meth:`encode` embeds fully prompted texts (prepend
    :attr:`query_prompt` to queries) into float32 rows, in input order, NOT normalised.
    """

    def __init__(self, folder: Path, config: dict[str, Any], session: onnxruntime.InferenceSession,
                 tokenizer: tokenizers.Tokenizer, more_sessions: Sequence[onnxruntime.InferenceSession] = ()) -> None:
        self.folder = folder
        self.config = config
        self._tokenizer = tokenizer
        # Sessions not running a batch now: encode_batch takes one, so threads never share one.
        self._free: queue.SimpleQueue[onnxruntime.InferenceSession] = queue.SimpleQueue()
        for s in (session, *more_sessions):
            self._free.put(s)
        self._workers = 1 + len(more_sessions)
        m, prompts = config["model"], config.get("prompts") or {}
        # Facts recorded at export: the model name (ragkit's manifest name), the window in tokens
        # (special tokens included; longer texts are truncated) and the prompts.
        self.name = str(m.get("name", ""))
        self.dimension = int(m["dimension"])
        self.max_seq_length = int(m["max_seq_length"])
        self.query_prompt = str(prompts.get("query", ""))
        self.passage_prompt = str(prompts.get("passage", ""))
        self._pooling, self._inputs = list(config["pooling"]), list(config["inputs"])
        self._feeds = [i.name for i in session.get_inputs()]
        missing = set(self._feeds) - set(self._inputs)
        if missing:
            raise OnnxEncoderError(f"{folder}/{MODEL_NAME} wants inputs {sorted(missing)} its config does not list")

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        *,
        threads: int | None = None,
        throughput: bool = False,
        verify: bool = False,
        sessions: int = 1,
    ) -> OnnxEncoder:
        """Open an exported encoder folder.

        The default session is tuned for one cold query: one intra-op thread (a thread pool
        only costs on two busy cores for a 10-30 token query), no weight pre-packing (it
        costs ~0.1 s at load and pays off only over many batches), the graph as exported
        (already optimised at export). ``throughput=True`` pre-packs and uses every core, for
        embedding many texts. ``verify=True`` also checks the files' SHA-256 (reads ~90 MB).

        ``sessions=N`` opens N sessions of ``threads`` each (default 1) that
        :meth:`encode_batch` spreads concurrent batches over (:attr:`workers`): on two busy
        cores, two one-thread sessions on alternate batches embed 1.1-1.2x more than one
        two-thread session, which waits on its slower thread at every operator.
        """
        root = as_folder(folder)
        config = read_config(root)
        _check_files(root, config, verify)
        return cls._open(root, config, threads=threads, throughput=throughput, sessions=sessions)

    @classmethod
    def _open(cls, root: Path, config: dict[str, Any], *, threads: int | None, throughput: bool,
              sessions: int = 1) -> OnnxEncoder:
        import onnxruntime as ort
        import tokenizers

        options = ort.SessionOptions()
        if sessions > 1:
            threads = threads or 1
        options.intra_op_num_threads = threads or (usable_cores() if throughput else 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        if throughput:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        else:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.add_session_config_entry("session.disable_prepacking", "1")
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            model, weights = _in_memory(root, options) if isinstance(root, PinnedFolder) else (str(root / MODEL_NAME), None)
            session, *more = (ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
                              for _ in range(max(1, int(sessions))))
            tokenizer = tokenizers.Tokenizer.from_file(str(root / TOKENIZER_NAME))
        except Exception as exc:  # onnxruntime and tokenizers raise their own untyped errors
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OnnxEncoderError(f"cannot load the ONNX encoder in {root}: {first[:200]}") from exc
        padding = tokenizer.padding or {}
        truncation = tokenizer.truncation or {}
        _configure_tokenizer(
            tokenizer, int(config["model"]["max_seq_length"]), truncation.get("direction", "right"),
            padding.get("direction", "right"), int(padding.get("pad_id", 0)), str(padding.get("pad_token", "[PAD]")),
            int(padding.get("pad_type_id", 0)),
        )
        encoder = cls(root, config, session, tokenizer, more)
        encoder._weights = weights  # None, or the in-memory weights the sessions read
        return encoder

    # -- facts -------------------------------------------------------------------------------
    @property
    def tokenizer_path(self) -> Path:
        return self.folder / TOKENIZER_NAME

    @property
    def precision(self) -> str:
        """``float32`` or ``int8``: the weights of the graph (int8 vectors only approximate torch)."""
        return str((self.config.get("onnx") or {}).get("precision", "float32"))

    @property
    def workers(self) -> int:
        """How many batches :meth:`encode_batch` can run at once (one per session)."""
        return self._workers

    @property
    def batch_limit(self) -> int | None:
        """The most texts a batch holds: 1 for int8 weights, else no limit.

        The int8 graph quantises activations with one scale per batch, so a text's vector
        depended on its batch-mates (cosine down to 0.967 between batchings of NG passages).
        One text a batch makes each vector a function of its text alone, closer to the float32
        model's (SciFact passages: mean cosine 0.99478 against 0.99445) and faster, with no
        padding (SciFact 110 against 71 passages/s, NG news 92 against 69 on two cores;
        benchmarks/int8_batching.py).
        """
        return 1 if self.precision == "int8" else None

    # -- the Encoder interface (ragkit.encoders.base) ----------------------------------------
    @property
    def max_tokens(self) -> int:
        return self.max_seq_length

    @property
    def cache_tag(self) -> str:
        from ragkit.encoders.registry import cache_tag

        return cache_tag("onnx-int8" if self.precision == "int8" else "onnx")

    def token_counter(self) -> Any:  # noqa: ANN401 - an HFTokenCounter
        from ragkit.ingest.tokens import HFTokenCounter

        return HFTokenCounter.from_file(self.tokenizer_path)

    def describe(self) -> dict[str, Any]:
        return {"name": f"onnx-{self.precision}" if self.precision == "int8" else "onnx", "precision": self.precision,
                "runtime": "onnxruntime"}

    # -- embedding ---------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embed fully prompted texts; float32 (len(texts), dimension), input order, NOT normalised.

        Texts go in length-sorted batches of ``batch_size`` (less padding); each batch is
        tokenised with truncation to :attr:`max_seq_length` and padding to its longest text.
        """
        from ragkit.encoders.base import encode_sorted

        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        return encode_sorted(self, texts, batch_size=batch_size, workers=1)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed one batch, padded to its longest text; safe to call from :attr:`workers` threads at once."""
        encodings = self._tokenizer.encode_batch(list(texts))
        arrays = _arrays(encodings)
        session = self._free.get()
        try:  # onnxruntime releases the GIL while it runs
            (tokens,) = session.run([OUTPUT_NAME], {n: arrays[n] for n in self._feeds})
        finally:
            self._free.put(session)
        return _pool(tokens, arrays["attention_mask"], self._pooling)


def _arrays(encodings: list[Any]) -> dict[str, np.ndarray]:
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def _pool(tokens: np.ndarray, attention_mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """sentence-transformers' Pooling over (batch, sequence, hidden) token embeddings, in float32."""
    mask = attention_mask.astype(np.float32)[:, :, None]
    parts = []
    for mode in modes:
        if mode in ("mean", "mean_sqrt_len_tokens"):
            total = (tokens * mask).sum(axis=1, dtype=np.float32)
            count = np.maximum(mask.sum(axis=1), 1e-9)
            parts.append(total / (count if mode == "mean" else np.sqrt(count)))
        elif mode == "cls":
            first = attention_mask.argmax(axis=1)
            parts.append(tokens[np.arange(tokens.shape[0]), first])
        elif mode == "max":
            parts.append(np.where(mask > 0, tokens, -np.inf).max(axis=1))
        else:
            raise OnnxEncoderError(f"unsupported pooling mode {mode!r}")
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def read_config(folder: str | os.PathLike[str] | PinnedFolder) -> dict[str, Any]:
    """Read and check ``onnx_encoder.json``; OnnxEncoderError for anything wrong."""
    root = as_folder(folder)
    path = root / CONFIG_NAME
    if not path.is_file():
        raise OnnxEncoderError(f"no ONNX encoder in {root} ({CONFIG_NAME} is missing)")
    config = read_versioned_json(path, FORMAT, FORMAT_VERSION, "ragkit ONNX encoder config", OnnxEncoderError)
    try:
        int(config["model"]["dimension"]), int(config["model"]["max_seq_length"])
        modes, inputs = list(config["pooling"]), list(config["inputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise OnnxEncoderError(f"{path} lacks model facts: {exc}") from exc
    if not modes or any(m not in _POOLING_MODES for m in modes) or "input_ids" not in inputs:
        raise OnnxEncoderError(f"{path} names pooling {modes!r} / inputs {inputs!r} this ragkit cannot run")
    return config


def _in_memory(root: PinnedFolder, options: Any) -> tuple[bytes, np.ndarray]:  # noqa: ANN401
    """The graph's bytes and its weights, handed to ``options`` in memory: a reader's pinned
    encoder is read from its descriptors (onnxruntime resolves links before it reads external
    weights, and a writer may have deleted the files by now). The sessions use the weights'
    buffer without copying it: keep it alive as long as they live."""
    weights = np.fromfile(root / DATA_NAME, dtype=np.uint8)
    options.add_external_initializers_from_files_in_memory([DATA_NAME], [weights], [weights.size])
    return (root / MODEL_NAME).read_bytes(), weights


def _check_files(root: Path | PinnedFolder, config: dict[str, Any], verify: bool) -> None:
    files = config.get("files")
    if not isinstance(files, dict) or not {MODEL_NAME, DATA_NAME, TOKENIZER_NAME} <= set(files):
        raise OnnxEncoderError(f"{root}/{CONFIG_NAME} does not list the encoder's files")
    for name, facts in files.items():
        path = root / name
        if "/" in name or "\\" in name or not path.is_file():
            raise OnnxEncoderError(f"ONNX encoder in {root} is damaged: {name} is missing")
        if path.stat().st_size != facts.get("bytes"):
            raise OnnxEncoderError(f"ONNX encoder in {root} is damaged: {name} has the wrong size")
        if verify and sha256_file(path) != facts.get("sha256"):
            raise OnnxEncoderError(f"ONNX encoder in {root} is damaged: {name} has the wrong SHA-256")
