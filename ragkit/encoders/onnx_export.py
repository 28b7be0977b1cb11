"""Exporting a sentence-transformers model to an ONNX encoder folder (needs torch; the runtime does not).

Why this module is long: it is one recipe (check the architecture, trace, fuse, quantise,
compare with torch, write the folder), and each step only makes sense beside the others.

``import sentence_transformers`` alone costs seconds, so a cold ``ragkit search`` cannot afford
it. At index time :func:`export_onnx` writes the sentence-transformers model that embedded the
passages as an ONNX graph (token embeddings) beside the index, with its tokenizer and a small
JSON config; at query time :class:`OnnxEncoder` runs that graph with ``onnxruntime`` and
``tokenizers`` and pools in numpy, importing neither torch, transformers nor
sentence-transformers.

Only the common architecture Transformer -> Pooling (-> Normalize) with float32 weights is
exported, and every export is checked against the torch model it came from (cosine of the
pooled vectors on probe texts, padded and unpadded). Anything else raises
:class:`OnnxExportUnsupported` and the caller keeps using sentence-transformers.

The folder::

    model.onnx          graph (opset 17), inputs ``input_ids``, ``attention_mask`` [,
                        ``token_type_ids``] of shape (batch, sequence); output
                        ``token_embeddings`` (batch, sequence, hidden)
    model.onnx.data     the float32 weights (ONNX external data: memory-mapped on load)
    tokenizer.json      the model's fast tokenizer, truncation and padding as the model uses them
    onnx_encoder.json   format, model facts, pooling, prompts, file sizes and SHA-256, export check

The folder is run by :class:`ragkit.encoders.onnx_runtime.OnnxEncoder`, which imports none of these.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.encoders.onnx_runtime import _MODEL_INPUTS, _POOLING_MODES, CONFIG_NAME, DATA_NAME, FORMAT, FORMAT_VERSION, MODEL_NAME, OUTPUT_NAME, PRECISIONS, TOKENIZER_NAME, OnnxEncoder, _arrays, _configure_tokenizer
from ragkit.errors import OnnxExportUnsupported
from ragkit.format.checksums import sha256_file
from ragkit.format.manifest import fsync_dir
from ragkit.vectors.exact import l2_normalize

if TYPE_CHECKING:
    import tokenizers

__all__ = ["INT8_QUANTIZATION", "MIN_INT8_COSINE", "export_onnx"]

logger = logging.getLogger(__name__)

OPSET = 17

# An export whose pooled vectors fall below this cosine to the torch model's on any probe is
# refused: fp32 ONNX agrees to ~1e-7, so anything lower is a wrong graph, not rounding.
MIN_EXPORT_COSINE = 0.9999

# int8 weights cost accuracy. all-MiniLM-L6-v2 per-channel int8 keeps cosine >= 0.9897 to
# torch on 300 SciFact passages (median 0.9945; nDCG@10 of SciFact and XQuAD-en indexes
# within 0.6 % of torch's) and >= 0.973 on the probes (the empty text is the worst);
# a broken quantisation (per-tensor scales) falls to 0.880 on the probes, far below this.
MIN_INT8_COSINE = 0.96

# How int8 exports are quantised; recorded in their config.
INT8_QUANTIZATION = {
    "method": "onnxruntime.quantization.quantize_dynamic",
    "weights": "int8, symmetric, per output channel",
    "activations": "uint8, dynamic (one scale a text: batches of one)",
    "reduce_range": False,
    "graph": "fused float32 graph (Attention, SkipLayerNormalization, BiasGelu)",
}

# Texts the export is checked on: empty, short, padded, Cyrillic, and longer than any window.
_PROBES = (
    "",
    "a",
    "How do I search an index from the terminal?",
    "технопарки Москвы и их резиденты",
    "The quick brown fox jumps over the lazy dog. " * 120,
    "Numbers 3.14, 2026-01-01 and symbols #@%& with MiXeD case, ёлочки «кавычки».",
)


# -- export (index time; needs torch) --------------------------------------------------------
def export_onnx(
    st_model_path_or_model: Any,
    target_dir: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    query_prompt: str | None = None,
    passage_prompt: str | None = None,
    fuse: bool = True,
    precision: str = "float32",
) -> Path:
    """Export a sentence-transformers model's token encoder to ``target_dir``; return that path.

    ``st_model_path_or_model`` is a loaded ``SentenceTransformer`` (as ragkit's ``Embedder``
    holds it) or a local model folder. ``model_name`` is recorded in the config (ragkit's
    manifest name of the model), and so are the prompts (default: the model's own ``query``
    and ``document``/``passage`` prompts; give the ones the index used). ``fuse`` applies
    onnxruntime's BERT fusions (attention, layer norm, GELU) when they keep the vectors within
    :data:`MIN_EXPORT_COSINE` of torch; otherwise the graph is kept as exported.

    ``precision="int8"`` then quantises the checked float32 graph's weights to int8
    (onnxruntime dynamic quantisation, per output channel; activations are quantised per batch
    at run time). That is ~2x faster on CPUs with int8 dot products (VNNI) but only close to
    torch, not equal: the export is refused below :data:`MIN_INT8_COSINE` and the config
    records ``onnx.precision`` so int8 vectors are never taken for float32 ones.

    The folder is written beside ``target_dir`` under a temporary name, fsynced and renamed
    into place: a crash leaves no half-written encoder. Give a fresh name (such as a
    generation-numbered one); an existing ``target_dir`` is replaced, not atomically.

    Raises :class:`OnnxExportUnsupported` for anything but Transformer -> Pooling (-> Normalize)
    with float32 weights and pooling in ``mean``, ``mean_sqrt_len_tokens``, ``cls``, ``max``,
    and when the exported graph does not reproduce the torch model.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    target = Path(target_dir)
    model = _load_st_model(st_model_path_or_model)
    facts = _check_architecture(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        raw = tmp / "raw" / "raw.onnx"
        raw.parent.mkdir()
        _torch_export(model, facts, raw)
        tokenizer = _tokenizer_from_model(model, facts)
        (tmp / TOKENIZER_NAME).write_text(tokenizer.to_str(), encoding="utf-8")
        candidates = [True, False] if fuse else [False]
        check: dict[str, Any] = {}
        label = model_name or facts["architecture"]
        for fused in candidates:
            try:
                _write_graph(raw, tmp, facts, fused)
                check = _compare_with_torch(model, tmp, facts)
            except Exception as exc:  # onnx, the fusion tool and onnxruntime raise untyped errors
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                if not fused:
                    raise OnnxExportUnsupported(f"the ONNX export of {label!r} does not run: {first}") from exc
                logger.warning("onnxruntime fusions failed for %s (%s); keeping the graph as exported", label, first)
                continue
            if check["min_cosine"] >= MIN_EXPORT_COSINE:
                check["fused"] = fused
                break
            logger.warning(
                "ONNX export%s of %s agrees with torch only to cosine %.6f",
                " (fused)" if fused else "", label, check["min_cosine"],
            )
        else:
            raise OnnxExportUnsupported(
                f"the ONNX export of {label!r} does not reproduce the "
                f"torch model (cosine {check['min_cosine']:.6f} < {MIN_EXPORT_COSINE}); keep sentence-transformers"
            )
        shutil.rmtree(raw.parent)
        if precision == "int8":
            check["float32_min_cosine"] = check["min_cosine"]
            _quantize_int8(tmp, facts)
            check.update(_compare_with_torch(model, tmp, facts))
            if check["min_cosine"] < MIN_INT8_COSINE:
                raise OnnxExportUnsupported(
                    f"the int8 ONNX export of {label!r} is too far from the torch model "
                    f"(cosine {check['min_cosine']:.4f} < {MIN_INT8_COSINE}); keep float32"
                )
        prompts = _prompts(model, query_prompt, passage_prompt)
        config = _config(facts, model_name, prompts, tmp, check, precision)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        # mkdtemp and onnx's external data are private; give everything the umask's file mode.
        mode = (tmp / CONFIG_NAME).stat().st_mode & 0o777
        tmp.chmod(mode | (mode & 0o444) >> 2)
        for f in tmp.iterdir():
            f.chmod(mode)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _load_st_model(model_or_path: Any) -> Any:
    if isinstance(model_or_path, (str, os.PathLike)):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(model_or_path), device="cpu", local_files_only=True)
    return model_or_path


def _check_architecture(model: Any) -> dict[str, Any]:
    """Facts the export needs; OnnxExportUnsupported for anything it cannot reproduce."""
    try:
        modules = [model[i] for i in range(len(model))]
    except TypeError:  # not a sequence of modules: not a sentence-transformers model
        modules = []
    kinds = [type(m).__name__ for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise OnnxExportUnsupported(
            f"only Transformer -> Pooling (-> Normalize) models export to ONNX; this one is "
            f"{' -> '.join(kinds) or type(model).__name__}"
        )
    transformer, pooling = modules[0], modules[1]
    task = getattr(transformer, "transformer_task", "feature-extraction")
    modalities = getattr(transformer, "modality_config", {"text": None})
    if task != "feature-extraction" or set(modalities) != {"text"}:
        raise OnnxExportUnsupported(f"only text feature-extraction transformers export to ONNX, not {task!r}")
    if getattr(transformer, "query_expansion", None):
        raise OnnxExportUnsupported("models with query expansion do not export to ONNX")
    tok = transformer.tokenizer
    if not getattr(tok, "is_fast", False) or getattr(tok, "backend_tokenizer", None) is None:
        raise OnnxExportUnsupported("the model has no fast tokenizer (tokenizer.json) to run without transformers")
    modes = pooling.pooling_mode
    modes = [modes] if isinstance(modes, str) else list(modes)
    if not modes or any(m not in _POOLING_MODES for m in modes):
        raise OnnxExportUnsupported(f"pooling {modes!r} is not supported by the ONNX encoder ({', '.join(_POOLING_MODES)})")
    hf = transformer.auto_model
    params = list(hf.parameters())
    if not params or any(str(p.dtype) != "torch.float32" for p in params):
        raise OnnxExportUnsupported("only float32 models export to ONNX (their vectors must match the index)")
    inputs = [n for n in _MODEL_INPUTS if n in tok.model_input_names or n in ("input_ids", "attention_mask")]
    max_len = int(model.max_seq_length or tok.model_max_length)
    dimension = int(getattr(pooling, "pooling_output_dimension", 0) or 0)
    if not dimension:
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dimension = int(get())
    return {
        "architecture": type(hf).__name__,
        "model_type": getattr(hf.config, "model_type", ""),
        "num_heads": int(getattr(hf.config, "num_attention_heads", 0) or 0),
        "hidden_size": int(getattr(hf.config, "hidden_size", 0) or 0),
        "pooling": modes,
        "include_prompt": bool(getattr(pooling, "include_prompt", True)),
        "normalize": kinds[-1] == "Normalize",
        "inputs": inputs,
        "max_seq_length": max_len,
        "dimension": dimension,
    }


def _torch_export(model: Any, facts: dict[str, Any], path: Path) -> None:
    import copy

    import torch

    hf = model[0].auto_model
    if next(hf.parameters()).device.type != "cpu":
        hf = copy.deepcopy(hf).to("cpu")
    names = facts["inputs"]

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = hf

        def forward(self, *args: Any) -> Any:
            return self.model(**dict(zip(names, args)), return_dict=False)[0]

    # Trace a padded batch: the traced graph then keeps the attention-mask path for any input.
    tok = _tokenizer_from_model(model, facts)
    encs = tok.encode_batch(["ragkit exports this encoder to onnx", "short"])
    arrays = _arrays(encs)
    args = tuple(torch.from_numpy(arrays[n]) for n in names)
    previous = getattr(hf.config, "_attn_implementation", None)
    was_training = hf.training
    hf.eval()
    _set_attention(hf, "eager")  # plain ops that onnxruntime's fusions recognise
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about data-dependent branches; the probe check after export
            # verifies the graph on padded and unpadded batches of other lengths.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TokenEmbeddings().eval(),
                args,
                str(path),
                input_names=list(names),
                output_names=[OUTPUT_NAME],
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in (*names, OUTPUT_NAME)},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # the tracer and exporter raise many types for one meaning
        raise OnnxExportUnsupported(
            f"torch.onnx cannot export {facts['architecture']}: {str(exc).strip().splitlines()[0][:200]}"
        ) from exc
    finally:
        if previous is not None:
            _set_attention(hf, previous)
        hf.train(was_training)


def _set_attention(hf: Any, implementation: str) -> None:
    setter = getattr(hf, "set_attn_implementation", None)
    if setter is not None:
        setter(implementation)
    else:
        hf.config._attn_implementation = implementation


def _write_graph(raw: Path, folder: Path, facts: dict[str, Any], fused: bool) -> None:
    """Write ``model.onnx`` + ``model.onnx.data`` from the raw export, fused or as exported."""
    import onnx

    for name in (MODEL_NAME, DATA_NAME):
        (folder / name).unlink(missing_ok=True)
    if fused:
        from onnxruntime.transformers import optimizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimizer.optimize_model(
                str(raw), model_type="bert", num_heads=facts["num_heads"], hidden_size=facts["hidden_size"], opt_level=0
            )
        proto = optimized.model
        facts["fusions"] = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        # onnxruntime resolves the fused contrib ops without it, onnx's checker and tools do not
        declared = {o.domain for o in proto.opset_import}
        for domain in sorted({n.domain for n in proto.graph.node} - declared - {"", "ai.onnx"}):
            proto.opset_import.append(onnx.helper.make_opsetid(domain, 1))
    else:
        proto = onnx.load(str(raw))
        facts["fusions"] = {}
    onnx.save_model(proto, str(folder / MODEL_NAME), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=DATA_NAME, size_threshold=1024)


def _quantize_int8(folder: Path, facts: dict[str, Any]) -> None:
    """Replace ``folder``'s float32 graph by its int8 dynamic quantisation (same file names)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    work = folder / "int8"
    work.mkdir()
    with warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        quantize_dynamic(
            str(folder / MODEL_NAME), str(work / MODEL_NAME), per_channel=True, reduce_range=False,
            weight_type=QuantType.QInt8,
            # The fused contrib ops defeat shape inference; their outputs are float32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    proto = onnx.load(str(work / MODEL_NAME))
    for name in (MODEL_NAME, DATA_NAME):
        (folder / name).unlink(missing_ok=True)
    onnx.save_model(proto, str(folder / MODEL_NAME), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=DATA_NAME, size_threshold=1024)
    shutil.rmtree(work)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantiser logs hints with ``logging.warning``, which would configure the
    root logger of the host application (``basicConfig``): hold it off and silence it."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    was, root.disabled = root.disabled, True
    try:
        yield
    finally:
        root.disabled = was
        root.removeHandler(guard)


def _tokenizer_from_model(model: Any, facts: dict[str, Any]) -> tokenizers.Tokenizer:
    import tokenizers

    tok = model[0].tokenizer
    own = tokenizers.Tokenizer.from_str(tok.backend_tokenizer.to_str())
    _configure_tokenizer(
        own, facts["max_seq_length"], getattr(tok, "truncation_side", "right"), getattr(tok, "padding_side", "right"),
        int(tok.pad_token_id or 0), str(tok.pad_token or "[PAD]"), int(getattr(tok, "pad_token_type_id", 0) or 0),
    )
    return own


def _compare_with_torch(model: Any, folder: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """Cosine of ONNX to torch vectors on the probes, in one padded batch and one by one."""
    reference = l2_normalize(model.encode(list(_PROBES), batch_size=len(_PROBES), convert_to_numpy=True,
                                          show_progress_bar=False))
    encoder = OnnxEncoder._open(folder, _draft_config(facts), threads=None, throughput=False)
    batched = l2_normalize(encoder.encode(_PROBES))
    single = l2_normalize(np.concatenate([encoder.encode([p]) for p in _PROBES]))
    cosines = np.concatenate([(batched * reference).sum(1), (single * reference).sum(1)])
    return {"probes": len(_PROBES), "min_cosine": round(float(cosines.min()), 8)}


def _draft_config(facts: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": {
        "name": "", "dimension": facts["dimension"], "max_seq_length": facts["max_seq_length"]},
        "pooling": facts["pooling"], "inputs": facts["inputs"], "output": OUTPUT_NAME,
        "prompts": {"query": "", "passage": ""}, "files": {}}


def _prompts(model: Any, query: str | None, passage: str | None) -> dict[str, str]:
    from ragkit.encoders.sentence_transformers import model_prompts

    own_query, own_passage = model_prompts(model)
    return {"query": own_query if query is None else query, "passage": own_passage if passage is None else passage}


def _config(facts: dict[str, Any], model_name: str | None, prompts: dict[str, str], folder: Path,
            check: dict[str, Any], precision: str = "float32") -> dict[str, Any]:
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": model_name or "",
            "architecture": facts["architecture"],
            "model_type": facts["model_type"],
            "dimension": facts["dimension"],
            "max_seq_length": facts["max_seq_length"],
            "normalize": facts["normalize"],
        },
        "pooling": facts["pooling"],
        "include_prompt": facts["include_prompt"],
        "prompts": prompts,
        "inputs": facts["inputs"],
        "output": OUTPUT_NAME,
        "onnx": {
            "opset": OPSET,
            "dynamic_axes": {"batch": 0, "sequence": 1},
            "precision": precision,
            **({"quantization": INT8_QUANTIZATION} if precision == "int8" else {}),
            "exporter": "torch.onnx.export (TorchScript, dynamo=False), eager attention",
            "fused": check["fused"],
            "fusions": facts.get("fusions", {}),
        },
        "check": {"probes": check["probes"], "min_cosine_to_torch": check["min_cosine"],
                  **({"float32_min_cosine_to_torch": check["float32_min_cosine"]} if "float32_min_cosine" in check else {})},
        "versions": {d: version(d) for d in ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "tokenizers")},
        "files": {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
                  for name in (MODEL_NAME, DATA_NAME, TOKENIZER_NAME)},
    }


def _replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    fsync_dir(target.parent)
