"""``navec-ru``: a Russian static embedding model built offline from natasha's navec news vectors.

Why this module is long: it is one offline recipe (vocabulary, weights, whitening, back-off
pieces, tokenizer, folder), and each step is measured against the others (see below).

The ``natasha`` package ships Russian word vectors trained on news
(``natasha/data/emb/navec_news_v1_1B_250K_300d_100q.tar``: 250,002 words, 300 dimensions, word
counts included, MIT). :func:`build_static_model` turns them into an ordinary
sentence-transformers model folder — one ``StaticEmbedding`` module (a tokenizer and an
embedding bag that averages token vectors) — that ``SentenceTransformer(path)`` loads with no
network and no custom code. ``--model navec-ru`` builds it on first use into the cache
(:func:`ensure_static_model`).

What the builder does to the vectors (dense nDCG@10 of each step: the README and
``benchmarks/static_model_bench.py --ablation``):

1. Vocabulary: navec's words normalised exactly as the tokenizer normalises text (lower case,
   ``ё`` -> ``е``, combining stress marks and accents dropped), duplicates merged
   (count-weighted mean). Words the pre-tokenizer would split (``северо-западный``) cannot occur
   as tokens and are dropped. The 100,000 most frequent words are kept (76 MB instead of
   175 MB; dense nDCG@10 -0.001 on xquad/ru, -0.003 on news, hybrid unchanged; 50,000 cost
   0.013 on news).
2. SIF weights ``a / (a + p(w))`` with ``a = 1e-4`` and ``p(w)`` navec's own word frequency,
   baked into the rows: the embedding bag's mean then is the SIF-weighted mean (its divisor is
   a per-text scale that L2 normalisation removes).
3. Whitening (ZCA) with the mean and covariance of the word vectors weighted by the square
   root of their counts, applied before the SIF weights: removes the common direction every
   average shares and evens out the dominant components (SIF's first-principal-component
   removal, generalised; it beat removing 1-12 components).
4. Back-off for word forms outside the vocabulary, inside a plain ``tokenizers`` WordPiece
   model: the vocabulary also holds the Snowball stem of every word that is not a word itself
   (vector: the count-weighted mean of the forms sharing it), and suffix pieces ``##...`` with
   zero vectors. WordPiece keeps a known word whole and cuts an unknown one into its longest
   known prefix plus pieces: ``суперкомпьютерами`` -> ``суперкомпьютера ##ми``,
   ``губернаторствовавшими`` -> ``губернаторств ##ова ##вшими`` (a stem). Numbers and unknown scripts become
   ``[UNK]`` (a zero vector).
5. The tokenizer truncates at ``window`` tokens (256, about 240 words): a static model has no
   real window, but ragkit sizes passages by it. Passages of 32 to 1,022 tokens scored within
   0.02 of each other; 256 gave the best hybrid score on news and few passages.

The folder is versioned: :data:`VERSION` changes whenever the recipe or its defaults change,
the cache folder is ``<name>-v<VERSION>``, and ragkit records ``navec-ru-v<VERSION>`` in index
manifests, so an index is never searched with vectors of another recipe.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.encoders.static import (
    BUILD_INFO,
    DEFAULT_WINDOW,
    NAME,
    VERSION,
    _is_built,
    cache_dir,
    logger,
    navec_archive,
)
from ragkit.errors import InvalidArgumentError, ModelLoadError
from ragkit.format.checksums import sha256_file
from ragkit.format.manifest import fsync_dir

__all__ = ["build_static_model", "ensure_static_model", "resolve_static_model"]

DEFAULT_SIF_A = 1e-4

DEFAULT_MAX_WORDS = 100_000

UNK = "[UNK]"

_PIECE = "##"

_NGRAM_WORDS = 50_000  # character 2- and 3-grams seen in this many most frequent words...

_NGRAM_MIN_COUNT = 5  # ...this often become "##" pieces

_WORD = re.compile(r"[^\W_]+")  # what the pre-tokenizer keeps whole

_PLAIN_WORD = re.compile("[a-z0-9\u0430-\u044f\u0451]+")  # needs no normalisation but ё -> е

_CYRILLIC = re.compile("[\u0400-\u04ff]")

_STATIC_EMBEDDING = {
    5: "sentence_transformers.models.StaticEmbedding",
    6: "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding",
}


def resolve_static_model(name: str) -> tuple[str, str] | None:
    """``(name to record, folder to load)`` for ``navec-ru`` or ``navec-ru-v<N>``, else None.

    The current version is built on first use. An older version is used when its folder is
    still in the cache (an index built by an earlier ragkit), else it is an error.
    """
    key = name.strip().lower()
    if key == NAME:
        version = VERSION
    elif key.startswith(NAME + "-v") and key[len(NAME) + 2 :].isdigit():
        version = int(key[len(NAME) + 2 :])
    else:
        return None
    versioned = f"{NAME}-v{version}"
    if version == VERSION:
        return versioned, str(ensure_static_model())
    folder = cache_dir() / versioned
    if (folder / BUILD_INFO).is_file():
        return versioned, str(folder)
    raise ModelLoadError(
        f"model {versioned!r} was built by another ragkit version and is not in {cache_dir()}; "
        f"this ragkit builds {NAME}-v{VERSION}: rebuild the index with --model {NAME}"
    )


def ensure_static_model(folder: str | os.PathLike[str] | None = None) -> Path:
    """The built model folder, building it first if needed (once; concurrent callers wait).

    ``folder`` defaults to ``cache_dir() / "navec-ru-v<VERSION>"``.
    """
    target = Path(folder) if folder is not None else cache_dir() / f"{NAME}-v{VERSION}"
    if _is_built(target):
        return target
    import shutil

    from filelock import FileLock

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target.parent / f".{target.name}.lock")):
            if not _is_built(target):
                if target.exists():  # a folder without a valid build record: not ours to trust
                    raise ModelLoadError(f"{target} exists but holds no complete {NAME} model; remove it")
                for stale in target.parent.glob(f".{target.name}.tmp-*"):  # a crashed build's
                    shutil.rmtree(stale, ignore_errors=True)
                logger.info("building %s into %s (first use)", NAME, target)
                build_static_model(target)
    except OSError as exc:
        raise ModelLoadError(f"cannot build {NAME} into {target}: {exc}") from exc
    return target


def build_static_model(
    target: str | os.PathLike[str],
    *,
    archive: str | os.PathLike[str] | None = None,
    window: int = DEFAULT_WINDOW,
    sif_a: float | None = DEFAULT_SIF_A,
    whiten: bool = True,
    stems: bool = True,
    max_words: int | None = DEFAULT_MAX_WORDS,
    dtype: str = "float16",
) -> Path:
    """Write a sentence-transformers model folder built from navec vectors to ``target``.

    The folder is written beside ``target`` and renamed into place, so ``target`` either does not
    exist or holds a complete model; an existing ``target`` is an error. The keyword arguments
    other than ``archive`` and ``target`` exist to measure the recipe; the defaults are
    ``navec-ru`` (``sif_a=None``: no frequency weighting; ``max_words``: keep the most frequent
    words, the rest back off to stems and prefixes; None keeps all 240,664). Loading needs sentence-transformers; building
    needs only numpy, ``navec``, ``tokenizers``, ``safetensors`` and PyStemmer.
    """
    target = Path(target)
    if target.exists():
        raise InvalidArgumentError(f"{target} already exists; give a new folder")
    if window < 8:
        raise InvalidArgumentError("window must be at least 8 tokens")
    if dtype not in ("float16", "float32"):
        raise InvalidArgumentError(f"dtype must be float16 or float32, not {dtype!r}")
    source = Path(archive) if archive is not None else navec_archive()
    params = {
        "window": window,
        "sif_a": sif_a,
        "whiten": whiten,
        "stems": stems,
        "max_words": max_words,
        "dtype": dtype,
    }
    tokens, weights, counts = _build_vocabulary(source, sif_a=sif_a, whiten=whiten, stems=stems, max_words=max_words)
    tokenizer = _make_tokenizer(tokens, window)
    weights = weights.astype(dtype)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_folder(tmp, tokenizer, weights, source, params, counts)
        os.rename(tmp, target)  # fails if target appeared meanwhile; the caller holds a lock
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)
    return target


def _build_vocabulary(
    source: Path, *, sif_a: float | None, whiten: bool, stems: bool, max_words: int | None
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """Tokens (the row order) and their float32 vectors; [UNK] and pieces have zero rows."""
    try:
        from navec import Navec
    except ImportError as exc:
        raise ModelLoadError(f"model {NAME!r} needs the 'navec' package to read its vectors (pip install navec)") from exc
    import tarfile

    try:
        navec = Navec.load(str(source))
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        raise ModelLoadError(f"cannot read navec vectors from {source}: {exc}") from exc
    raw = _unpack(navec.pq)
    raw_counts = np.asarray(navec.vocab.counts, dtype=np.float64)
    total = float(raw_counts.sum())

    # 1. words, normalised as text will be; ё-forms and the like merged into one row
    keys = _normalize_words(navec.vocab.words)
    rows_of: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if raw_counts[i] > 0 and key and _WORD.fullmatch(key):  # not <unk>, <pad>, "северо-западный"
            rows_of.setdefault(key, []).append(i)
    unique = list(rows_of)
    first = np.array([rows[0] for rows in rows_of.values()])
    counts = raw_counts[first]
    merged = [j for j, rows in enumerate(rows_of.values()) if len(rows) > 1]
    for j in merged:
        counts[j] = raw_counts[rows_of[unique[j]]].sum()
    order = np.lexsort((np.array(unique), -counts))  # frequent first, ties by word
    if max_words is not None:
        order = order[:max_words]
    words = [unique[i] for i in order]
    counts = counts[order]
    vectors = raw[first[order]]
    position = {int(j): k for k, j in enumerate(order)}
    for j in merged:
        if j in position:
            ids = rows_of[unique[j]]
            vectors[position[j]] = raw_counts[ids] @ raw[ids] / raw_counts[ids].sum()
    del raw

    # 2. whitening (ZCA), statistics weighted by sqrt(count)
    if whiten:
        w = np.sqrt(counts)
        w = (w / w.sum()).astype(np.float32)
        vectors -= w @ vectors
        cov = ((vectors * w[:, None]).T @ vectors).astype(np.float64)
        eigval, eigvec = np.linalg.eigh(cov)
        zca = (eigvec * (1.0 / np.sqrt(np.maximum(eigval, 1e-12)))) @ eigvec.T
        vectors = vectors @ zca.astype(np.float32)

    # 4. stems of the words that are not words themselves: mean of their forms
    stem_tokens: list[str] = []
    suffixes: set[str] = set()
    stem_vectors = np.zeros((0, vectors.shape[1]), dtype=np.float32)
    stem_counts = np.zeros(0)
    if stems:
        stem_of = _stem_all(words)
        known = set(words)
        group_of: dict[str, int] = {}
        members: list[int] = []
        groups: list[int] = []
        for j, (word, stem) in enumerate(zip(words, stem_of)):
            if len(stem) < len(word) and word.startswith(stem):
                suffixes.add(word[len(stem) :])
            if stem in known or len(stem) < 2 or not word.startswith(stem):
                continue
            members.append(j)
            groups.append(group_of.setdefault(stem, len(group_of)))
        stem_tokens = list(group_of)
        member_idx, group_idx = np.array(members, dtype=np.int64), np.array(groups, dtype=np.int64)
        stem_counts = np.bincount(group_idx, weights=counts[member_idx], minlength=len(stem_tokens))
        by_group = np.argsort(group_idx, kind="stable")
        member_idx, group_idx = member_idx[by_group], group_idx[by_group]
        starts = np.flatnonzero(np.r_[True, group_idx[1:] != group_idx[:-1]])
        weighted = vectors[member_idx] * counts[member_idx, None].astype(np.float32)
        stem_vectors = np.add.reduceat(weighted, starts, axis=0) / stem_counts[:, None].astype(np.float32)

    pieces = sorted(suffixes | _char_pieces(words) | set("0123456789"))
    tokens = [UNK, *words, *stem_tokens, *(_PIECE + p for p in pieces)]
    matrix = np.zeros((len(tokens), vectors.shape[1]), dtype=np.float32)
    matrix[1 : 1 + len(words)] = vectors
    matrix[1 + len(words) : 1 + len(words) + len(stem_tokens)] = stem_vectors

    # 3. SIF weights from navec's own frequencies
    if sif_a is not None:
        all_counts = np.concatenate([counts, stem_counts])
        matrix[1 : 1 + len(all_counts)] *= (sif_a / (sif_a + all_counts / total)).astype(np.float32)[:, None]
    summary = {"words": len(words), "stems": len(stem_tokens), "pieces": len(pieces), "tokens": len(tokens)}
    return tokens, matrix, summary


def _unpack(pq: Any) -> np.ndarray:
    """navec's product-quantised vectors as a float32 matrix (``PQ.unpack``, a few times faster)."""
    codes, indexes = np.asarray(pq.codes, dtype=np.float32), np.asarray(pq.indexes)
    qdim, _, sub = codes.shape
    out = np.empty((indexes.shape[0], qdim * sub), dtype=np.float32)
    for q in range(qdim):
        out[:, q * sub : (q + 1) * sub] = codes[q][indexes[:, q]]
    return out


def _normalize_words(words: list[str]) -> list[str]:
    """The tokenizer's normalisation of each word; plain lower-case words take a fast path."""
    normalizer = _normalizer()
    out = []
    for word in words:
        if _PLAIN_WORD.fullmatch(word):
            out.append(word.replace("ё", "е"))
        else:
            out.append(normalizer.normalize_str(word))
    return out


def _char_pieces(words: list[str]) -> set[str]:
    """Every character of the vocabulary, and the frequent 2- and 3-grams of its common words.

    With them an unknown word costs fewer tokens: 1.05 tokens a word on news instead of 1.08.
    """
    from collections import Counter

    chars = set("".join(words))
    common = words[:_NGRAM_WORDS]
    grams = Counter(w[i : i + n] for w in common for n in (2, 3) for i in range(len(w) - n + 1))
    return chars | {g for g, c in grams.items() if c >= _NGRAM_MIN_COUNT}


def _stem_all(words: list[str]) -> list[str]:
    """Snowball stems, the Russian stemmer for Cyrillic words, the English one for others."""
    import Stemmer  # PyStemmer

    out = list(words)
    cyrillic = [bool(_CYRILLIC.search(w)) for w in words]
    for language, wanted in (("russian", True), ("english", False)):
        idx = [i for i, c in enumerate(cyrillic) if c is wanted]
        for i, stem in zip(idx, Stemmer.Stemmer(language).stemWords([words[i] for i in idx])):
            out[i] = stem
    return out


def _normalizer() -> Any:
    """Lower case, ``ё`` -> ``е``, combining marks (stress marks, accents) dropped, ``й`` kept.

    No Unicode NFKC/NFKD pass: it costs a tenth of the encoding time, and what it would fold
    (ligatures, full-width forms, decomposed letters) is rare in Russian news; a decomposed
    ``ё``/``й`` is still handled.
    """
    from tokenizers import Regex, normalizers

    return normalizers.Sequence(
        [
            normalizers.Lowercase(),
            normalizers.Replace("ё", "е"),
            normalizers.Replace("и\u0306", "й"),
            normalizers.Replace(Regex("[\u0300-\u036f]"), ""),
        ]
    )


def _make_tokenizer(tokens: list[str], window: int) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(
        models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=_PIECE, max_input_chars_per_word=100)
    )
    tokenizer.normalizer = _normalizer()
    # Tokens are maximal runs of letters and digits, as in ragkit.lexical.analysis; the rest separates.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\W_]+"), behavior="removed")
    tokenizer.decoder = decoders.WordPiece(prefix=_PIECE)
    tokenizer.enable_truncation(max_length=window)
    return tokenizer


def _write_folder(
    folder: Path, tokenizer: Any, weights: np.ndarray, source: Path, params: dict[str, Any], counts: dict[str, int]
) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from safetensors.numpy import save_file

    from ragkit._version import __version__

    try:
        st_major = int(version("sentence-transformers").split(".")[0])
    except (PackageNotFoundError, ValueError):
        st_major = 6
    module_type = _STATIC_EMBEDDING[min(max(st_major, 5), 6)]
    save_file({"embedding.weight": np.ascontiguousarray(weights)}, str(folder / "model.safetensors"))
    tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(folder / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": module_type}])
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    info = {
        "name": NAME,
        "version": VERSION,
        "built_by": f"ragkit {__version__}",
        "source": {"file": source.name, "sha256": sha256_file(source), "licence": "MIT (natasha / navec)"},
        "params": params,
        "dimension": int(weights.shape[1]),
        "counts": counts,
        "weights_sha256": sha256_file(folder / "model.safetensors"),
    }
    (folder / "README.md").write_text(_readme(info), encoding="utf-8")
    _write_json(folder / BUILD_INFO, info)  # written last: its presence marks a complete build
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(folder)


def _readme(info: dict[str, Any]) -> str:
    return (
        f"# {info['name']} v{info['version']}\n\n"
        "A Russian static embedding model for sentence-transformers, built by ragkit "
        "(`ragkit.encoders.static.build_static_model`) from the navec news word vectors shipped in "
        f"the `natasha` package (`{info['source']['file']}`, MIT licence).\n\n"
        "One `StaticEmbedding` module: a WordPiece tokenizer (lower case, accents and "
        "stress marks dropped, ё -> е; unknown forms back off to their longest known prefix, "
        "Snowball stems included) and an embedding bag averaging whitened, SIF-weighted word "
        f"vectors ({info['dimension']} dimensions). Cosine similarity.\n\n"
        "```python\nfrom sentence_transformers import SentenceTransformer\n"
        "model = SentenceTransformer(PATH_OF_THIS_FOLDER, device='cpu')\n```\n\n"
        f"Build parameters: `{json.dumps(info['params'], sort_keys=True)}`\n"
    )


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
