"""The manifest's schema: typed sections, checked once when the manifest is read.

Every field a reader, an updater or ``ragkit info`` uses is checked here for its type and its
range (an integer is an ``int``, never a bool, float, NaN or 1e999; a count is at most
2^40), every name of a file or folder is a plain relative name inside the index folder (no
absolute path, no ``..``), every data file the manifest names is covered by its checksums,
and nesting is bounded. Anything else is one :class:`~ragkit.errors.IndexFormatError` line
naming the field, so code past :func:`parse` may index the manifest without guarding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.errors import IndexFormatError
from ragkit.format.inside import brief, bad_name

MAX_COUNT = 1 << 40  # passages, documents, vectors
MAX_DIMENSION = 1 << 16
MAX_FILE_SIZE = 1 << 50
MAX_FILES = 100_000
MAX_NESTING = 32
SEARCH_PARAMETERS = ("efSearch", "nprobe", "k_factor")


class _Bad(Exception):
    """A field that fails its check: (dotted path, why)."""


def _at(data: Mapping[str, Any], path: str, key: str, kind: type | tuple[type, ...], required: bool = True,
        nullable: bool = False) -> Any:
    """``data[key]`` if it is of ``kind``. Missing: an error if ``required``, else None; null
    (which ``dict.get(key, default)`` would hand on): an error unless ``nullable``."""
    if key not in data:
        if required:
            raise _Bad(f"{path}{key}", "is missing")
        return None
    value = data[key]
    if value is None:
        if nullable:
            return None
        raise _Bad(f"{path}{key}", f"must be {_kind(kind)}, not null")
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _Bad(f"{path}{key}", f"must be {_kind(kind)}, not {brief(value)}")
    if not isinstance(value, kind):
        raise _Bad(f"{path}{key}", f"must be {_kind(kind)}, not {brief(value)}")
    return value


def _int(data: Mapping[str, Any], path: str, key: str, lo: int, hi: int, required: bool = True,
         nullable: bool = False) -> int | None:
    value = _at(data, path, key, int, required, nullable)
    if value is not None and not lo <= value <= hi:
        raise _Bad(f"{path}{key}", f"must be an integer in [{lo}, {hi}], not {brief(value)}")
    return value


def _number(data: Mapping[str, Any], path: str, key: str, lo: float, hi: float, required: bool = False) -> float | None:
    value = _at(data, path, key, (int, float), required)
    if value is not None and not (math.isfinite(value) and lo <= value <= hi):
        raise _Bad(f"{path}{key}", f"must be a number in [{lo:g}, {hi:g}], not {brief(value)}")
    return None if value is None else float(value)


def _text(data: Mapping[str, Any], path: str, key: str, required: bool = True, limit: int = 4096,
          nullable: bool = False) -> str | None:
    value = _at(data, path, key, str, required, nullable)
    if value is not None and len(value) > limit:
        raise _Bad(f"{path}{key}", f"is longer than {limit} characters")
    return value


def _name(data: Mapping[str, Any], path: str, key: str, required: bool = True) -> str | None:
    if key not in data and not required:
        return None
    value = data.get(key)
    why = bad_name(value, depth=1)
    if why is not None:
        raise _Bad(f"{path}{key}", f"{brief(value)} {why}")
    return value


def _section(data: Mapping[str, Any], key: str, required: bool = True) -> dict[str, Any] | None:
    return _at(data, "", key, dict, required)


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list", bool: "true or false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds if not (k is int and float in kinds))


@dataclass(frozen=True)
class FileRecord:
    size: int
    head_sha256: str
    sha256: str


@dataclass(frozen=True)
class ModelSection:
    name: str
    dimension: int
    max_tokens: int | None
    query_prompt: str
    passage_prompt: str


@dataclass(frozen=True)
class VectorsSection:
    file: str
    factory: str
    index_type: str
    search: dict[str, float]
    target_recall: float | None


@dataclass(frozen=True)
class LexicalSection:
    dir: str
    documents_dir: str


@dataclass(frozen=True)
class ChunkerSection:
    max_tokens: int | None
    overlap_tokens: int
    title_prefix: bool


@dataclass(frozen=True)
class Manifest:
    """The checked manifest; ``raw`` is the JSON object it was read from."""

    generation: int | None
    model: ModelSection
    vectors: VectorsSection
    store_file: str
    lexical: LexicalSection
    documents: int
    passages: int
    query_encoder_dir: str | None
    chunker: ChunkerSection
    source_paths: tuple[str, ...]
    files: dict[str, FileRecord]
    raw: dict[str, Any]

    def names(self) -> set[str]:
        """The top-level names (files and folders) of this generation in the index folder."""
        return {rel.split("/", 1)[0] for rel in self.files}


def nesting(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (iterative: no recursion limit)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            return deepest
        todo.extend((child, depth + 1) for child in children)
    return deepest


def parse(data: dict[str, Any], path: Path) -> Manifest:
    """Check a manifest object read from ``path``; raise one IndexFormatError line for the first fault."""
    if nesting(data) > MAX_NESTING:
        raise IndexFormatError(f"{path} nests deeper than {MAX_NESTING} levels")
    try:
        return _parse(data)
    except _Bad as bad:
        where, why = bad.args
        raise IndexFormatError(f"{path} is damaged: {where} {why}") from None


def _parse(data: dict[str, Any]) -> Manifest:
    for key in ("ragkit_version", "created"):
        _text(data, "", key, required=False, limit=200)
    generation = _int(data, "", "generation", 1, 999_999, required=False)
    m = _section(data, "model")
    model = ModelSection(
        name=_text(m, "model.", "name", limit=1024),  # type: ignore[arg-type]
        dimension=_int(m, "model.", "dimension", 1, MAX_DIMENSION),  # type: ignore[arg-type]
        max_tokens=_int(m, "model.", "max_tokens", 1, 1 << 20),
        query_prompt=_text(m, "model.", "query_prompt", required=False) or "",
        passage_prompt=_text(m, "model.", "passage_prompt", required=False) or "",
    )
    _text(m, "model.", "metric", required=False, limit=64)
    v = _section(data, "vectors")
    search = _search(v, "vectors.")
    tuning = _at(v, "vectors.", "tuning", dict, required=False) or {}
    target = _number(tuning, "vectors.tuning.", "target", 1e-9, 1.0)
    for key in ("recall@10", "held_out_recall@10"):
        _number(tuning, "vectors.tuning.", key, 0.0, 1.0, required=bool(tuning.get("queries")))
    _int(tuning, "vectors.tuning.", "queries", 0, MAX_COUNT, required=False)
    _text(tuning, "vectors.tuning.", "query_kind", required=False, limit=64)
    for key in ("tuning_seconds", "vector_seconds", "build_seconds"):
        _number(tuning, "vectors.tuning.", key, 0.0, 1e9)
    _number(tuning, "vectors.tuning.", "share", 0.0, 1e6)
    selection = _at(tuning, "vectors.tuning.", "selection", dict, required=False) or {}
    final = _at(selection, "vectors.tuning.selection.", "final", dict, required=False) or {}
    if final:  # what `ragkit info` prints of auto's final comparison
        _text(final, "vectors.tuning.selection.final.", "factory", limit=256)
        _at(final, "vectors.tuning.selection.final.", "kept", bool)
        for key in ("ms", "exact_ms"):
            _number(final, "vectors.tuning.selection.final.", key, 0.0, 1e9, required=True)
    retrain = _at(v, "vectors.", "retrain", dict, required=False) or {}
    for key in ("passages", "changed"):
        _int(retrain, "vectors.retrain.", key, 0, MAX_COUNT, required=False)
    _number(retrain, "vectors.retrain.", "share", 0.0, 1.0)
    _int(v, "vectors.", "tombstones", 0, MAX_COUNT, required=False)  # checked against the file when it is read
    if v.get("dimension") is not None and _int(v, "vectors.", "dimension", 1, MAX_DIMENSION) != model.dimension:
        raise _Bad("vectors.dimension", f"({v['dimension']}) differs from model.dimension ({model.dimension})")
    factory = _text(v, "vectors.", "factory", limit=256)
    vectors = VectorsSection(
        file=_name(v, "vectors.", "file"),  # type: ignore[arg-type]
        factory=factory,  # type: ignore[arg-type]
        index_type=_text(v, "vectors.", "index_type", required=False, limit=256) or factory,  # type: ignore[arg-type]
        search={k: float(x) for k, x in search.items()},
        target_recall=target,
    )
    s = _section(data, "store")
    store_file = _name(s, "store.", "file")
    lx = _section(data, "lexical")
    lexical = LexicalSection(dir=_name(lx, "lexical.", "dir"), documents_dir=_name(lx, "lexical.", "documents_dir"))  # type: ignore[arg-type]
    for key in ("k1", "b"):
        _number(lx, "lexical.", key, 0.0, 1000.0)
    _text(lx, "lexical.", "method", required=False, limit=64)
    analyzer = _at(lx, "lexical.", "analyzer", dict, required=False) or {}
    _text(analyzer, "lexical.analyzer.", "name", required=False, limit=256)
    c = _section(data, "counts")
    documents = _int(c, "counts.", "documents", 0, MAX_COUNT)
    passages = _int(c, "counts.", "passages", 0, MAX_COUNT)
    if documents > passages:  # type: ignore[operator]
        raise _Bad("counts.documents", f"({documents}) exceeds counts.passages ({passages})")
    # ids of removed passages stay unused up to 10 % of the id space (build/reuse.py): allow twice the count
    _int(c, "counts.", "passage_ids", passages, 2 * passages + 1024, required=False)  # type: ignore[operator]
    encoder = data.get("query_encoder")
    encoder_dir = None
    if encoder is not None:
        _section(data, "query_encoder")
        encoder_dir = _name(encoder, "query_encoder.", "dir")
    ch = _section(data, "chunker")
    chunker = ChunkerSection(
        max_tokens=_int(ch, "chunker.", "max_tokens", 1, 1 << 20, required=False, nullable=True),
        overlap_tokens=_int(ch, "chunker.", "overlap_tokens", 0, 1 << 20, required=False) or 0,
        title_prefix=_at(ch, "chunker.", "title_prefix", bool, required=False) is not False,
    )
    for key in ("tokenizer", "sentence_splitter"):
        _text(ch, "chunker.", key, required=False, limit=1024)
    src = _section(data, "sources")
    paths = _at(src, "sources.", "paths", list, required=False) or []
    if len(paths) > MAX_FILES or not all(isinstance(p, str) for p in paths):
        raise _Bad("sources.paths", "must be a list of path strings")
    _text(src, "sources.", "fingerprint", required=False, limit=128, nullable=True)
    files = _files(_section(data, "files"))
    _covered(files, {"vectors.file": vectors.file, "store.file": store_file}, is_dir=False)  # type: ignore[dict-item]
    dirs = {"lexical.dir": lexical.dir, "lexical.documents_dir": lexical.documents_dir}
    if encoder_dir is not None:
        dirs["query_encoder.dir"] = encoder_dir
    second = _language_vectors(data, passages)  # type: ignore[arg-type]
    _covered(files, {f"language_vectors.indexes[{i}].file": e["file"] for i, e in enumerate(second)}, is_dir=False)
    dirs.update({f"language_vectors.indexes[{i}].query_encoder.dir": e["query_encoder"]["dir"]
                 for i, e in enumerate(second) if e.get("query_encoder") is not None})
    _covered(files, dirs, is_dir=True)
    return Manifest(generation, model, vectors, store_file, lexical, documents, passages, encoder_dir,  # type: ignore[arg-type]
                    chunker, tuple(paths), files, data)


def _search(section: dict[str, Any], where: str) -> dict[str, Any]:
    """A vector index's search parameters: known names, each a number in range."""
    search = _at(section, where, "search", dict, required=False) or {}
    for key in search:
        if key not in SEARCH_PARAMETERS:
            raise _Bad(f"{where}search", f"names an unknown parameter {brief(key)}")
        _number(search, f"{where}search.", key, 1, 1 << 20)
    return search


def _language_vectors(data: dict[str, Any], passages: int) -> list[dict[str, Any]]:
    """The second vector indexes of minority languages (``ragkit.build.languages``), checked."""
    section = _at(data, "", "language_vectors", dict, required=False) or {}
    _at(section, "language_vectors.", "enabled", bool, required=False)
    indexes = _at(section, "language_vectors.", "indexes", list, required=False) or []
    if len(indexes) > 16:
        raise _Bad("language_vectors.indexes", "lists more than 16 indexes")
    seen: set[str] = set()
    for i, entry in enumerate(indexes):
        where = f"language_vectors.indexes[{i}]."
        if not isinstance(entry, dict):
            raise _Bad(where[:-1], f"must be an object, not {brief(entry)}")
        language = _text(entry, where, "language", limit=16)
        if language in seen:
            raise _Bad(f"{where}language", f"{brief(language)} appears twice")
        seen.add(language)  # type: ignore[arg-type]
        m = _at(entry, where, "model", dict)
        _text(m, f"{where}model.", "name", limit=1024)
        _int(m, f"{where}model.", "dimension", 1, MAX_DIMENSION)
        _int(m, f"{where}model.", "max_tokens", 1, 1 << 20)
        for key in ("query_prompt", "passage_prompt"):
            _text(m, f"{where}model.", key, required=False)
        _name(entry, where, "file")
        _text(entry, where, "factory", limit=256)
        _search(entry, where)
        _int(entry, where, "passages", 1, passages)
        _int(entry, where, "documents", 1, MAX_COUNT)
        _int(entry, where, "tombstones", 0, 0, required=False)  # written whole: never any
        encoder = _at(entry, where, "query_encoder", dict, required=False, nullable=True)
        if encoder is not None:
            _name(encoder, f"{where}query_encoder.", "dir")
    return indexes


def _files(section: dict[str, Any]) -> dict[str, FileRecord]:
    if not section:
        raise _Bad("files", "lists no file checksums")
    if len(section) > MAX_FILES:
        raise _Bad("files", f"lists more than {MAX_FILES} files")
    out: dict[str, FileRecord] = {}
    for rel, record in section.items():
        why = bad_name(rel)
        if why is not None:
            raise _Bad("files", f"key {brief(rel)} {why}")
        if not isinstance(record, dict):
            raise _Bad(f"files[{rel!r}]", f"must be an object, not {brief(record)}")
        where = f"files[{rel!r}]."
        digests = []
        for key in ("head_sha256", "sha256"):
            digest = _text(record, where, key, limit=64)
            if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):  # type: ignore[arg-type]
                raise _Bad(f"{where}{key}", "is not a SHA-256 hex digest")
            digests.append(digest)
        out[rel] = FileRecord(_int(record, where, "size", 0, MAX_FILE_SIZE), *digests)  # type: ignore[arg-type]
    return out


def _covered(files: dict[str, FileRecord], named: dict[str, str], is_dir: bool) -> None:
    """Every data file or folder the manifest names must have checksums (so it is checked at open)."""
    for where, name in named.items():
        if is_dir and not any(rel.startswith(f"{name}/") for rel in files):
            raise _Bad(where, f"{name!r} has no file checksums in files")
        if not is_dir and name not in files:
            raise _Bad(where, f"{name!r} has no checksum in files")
