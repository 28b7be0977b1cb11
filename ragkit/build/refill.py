"""An update's approximate vector index without training or tuning again, while little has changed.

Training an IVF quantiser and tuning search parameters to the recall target are the costly
part of writing an approximate index (at 1M navec-ru passages tuning alone took 697 s of a
25-minute build). Neither depends much on a few percent of the passages, so an update that
changes at most :data:`RETRAIN_SHARE` of the passages since the index was last trained refills
a copy of the current trained index (same quantiser, same codebooks, same search parameters)
with the new generation's vectors. Changes are counted across updates (passages added plus
passages removed since training), so a collection that drifts is retrained and retuned once
the sum passes the share. The manifest's ``vectors.retrain`` records the count, and
``ragkit info`` shows it.

Exact (Flat) indexes have nothing to train or tune and are written afresh; with ``--index-type
auto`` an update within the share also keeps the current type, so an index that crosses the
size where auto would pick another type (100k passages: Flat -> IVF) is not retrained and
retuned for a 1 % update (that took 210 s of a 320 s update at 100k).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.progress import Progress
from ragkit.vectors.faiss_index import VectorIndex

RETRAIN_SHARE = 0.10  # retrain and retune once this share of the passages changed since training


@dataclass(frozen=True)
class Current:
    """The current generation's vector index and its manifest entry, as an update found them."""

    index: VectorIndex
    entry: dict[str, Any]
    passages: int
    file: Path | None = None  # its vector file, read again into memory by an update in place


def history(entry: dict[str, Any], passages: int) -> tuple[int, int]:
    """(passages when last trained, passages changed since) from a manifest's vectors entry."""
    retrain = entry.get("retrain") if isinstance(entry.get("retrain"), dict) else {}
    trained_at = retrain.get("passages")
    changed = retrain.get("changed")
    if not isinstance(trained_at, int) or not isinstance(changed, int) or trained_at <= 0 or changed < 0:
        return passages, 0  # an index written before the count was kept: trained at its size
    return trained_at, changed


def fresh_entry(passages: int) -> dict[str, Any]:
    """``vectors.retrain`` of an index just trained and tuned on ``passages``."""
    return {"passages": int(passages), "changed": 0, "share": RETRAIN_SHARE, "refilled": False}


def drift(current: Current, changed: int) -> tuple[int, int, bool]:
    """(passages when last trained, passages changed since, including this update; whether that
    is still within :data:`RETRAIN_SHARE`)."""
    trained_at, before = history(current.entry, current.passages)
    total = before + int(changed)
    return trained_at, total, total <= RETRAIN_SHARE * trained_at


def kept_entry(current: Current, changed: int, *, refilled: bool) -> dict[str, Any]:
    """``vectors.retrain`` of an update that kept the current index's training and type."""
    trained_at, total, _ = drift(current, changed)
    return {"passages": trained_at, "changed": total, "share": RETRAIN_SHARE, "refilled": refilled}


def refill(path: Path, ids: np.ndarray, vectors: np.ndarray, current: Current | None, changed: int,
           progress: Progress) -> dict[str, Any] | None:
    """Write the new vectors into a copy of the current trained index; its manifest entry.

    None when the index must be written afresh: no current approximate index, another
    dimension, or more than :data:`RETRAIN_SHARE` of the passages changed since training.
    """
    if current is None or current.index.exact or vectors.shape[1] != current.index.dimension:
        return None
    if not drift(current, changed)[2]:
        return None
    index = current.index.emptied()
    progress.start("Indexing (trained index kept)", len(ids))
    index.add_in_pieces(ids, vectors, progress.advance)
    index.params = dict(current.entry.get("search") or {})
    progress.start("Writing", None)
    index.save(path)
    return kept_settings(current, changed)


def refill_or_write(path: Path, ids: np.ndarray, vectors: np.ndarray, current: Current | None, changed: int,
                    options: Any, progress: Progress,  # noqa: ANN401 - BuildOptions (not imported here)
                    write: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The manifest entry of an index refilled while little changed (:func:`refill`), else of one
    ``write(options)`` builds; under ``auto`` within the share it keeps the current type, so
    crossing auto's size limits does not retrain and retune for a small update."""
    from dataclasses import replace

    entry = refill(path, ids, vectors, current, changed, progress) if current is not None else None
    if entry is None:
        keep_type = current is not None and options.index_type == "auto" and drift(current, changed)[2]
        kept_type = replace(options, index_type=current.entry["factory"]) if keep_type else options  # type: ignore[union-attr]
        entry = write(kept_type)
        entry["retrain"] = (kept_entry(current, changed, refilled=False) if keep_type  # type: ignore[arg-type]
                            else fresh_entry(len(ids)))
    return entry


def in_place_applies(current: Current | None, changed: int, dimension: int) -> bool:
    """Whether an update can keep the current index's vectors where they are (:func:`in_place`)."""
    return (current is not None and current.file is not None and current.index.updatable
            and current.index.dimension == dimension and drift(current, changed)[2])


def in_place(path: Path, current: Current, reused: np.ndarray, ids: np.ndarray, fresh_vectors: np.ndarray,
             changed: int, progress: Progress) -> dict[str, Any]:
    """Write the next generation's index as the current one with its vectors kept in place: kept
    passages' vectors take their new ids, removed ones become tombstones (:meth:`VectorIndex.relabel`)
    and only the new passages' vectors are added (``add_with_ids``). The cost is what changed,
    not a re-insertion of every vector: a graph (HNSW) gains nodes, inverted lists gain entries.
    ``reused[i]``: the current id of the next generation's passage ``i`` (-1 for a new one),
    ``ids[i]`` its next id: the same while ids are stable (:func:`ragkit.build.reuse.passage_ids`)."""
    assert current.file is not None
    entry = current.entry
    index = VectorIndex.load(current.file, entry["factory"], current.index.dimension, entry.get("search"),
                             tombstones=int(entry.get("tombstones", 0)), mapped=False)
    new_of_old = np.full(max(int(reused.max(initial=-1)) + 1, len(index.ids())), -1, dtype=np.int64)
    kept = np.flatnonzero(reused >= 0)
    new_of_old[reused[kept]] = ids[kept]
    index.relabel(new_of_old)
    fresh = np.flatnonzero(reused < 0)
    progress.start("Indexing (in place)", len(fresh))
    index.add_in_pieces(ids[fresh], fresh_vectors, progress.advance)
    progress.start("Writing", None)
    index.save(path)
    return {**kept_settings(current, changed), "tombstones": index.tombstones}


def kept_settings(current: Current, changed: int) -> dict[str, Any]:
    """The manifest entry of an index that keeps the current training and tuning (refilled or in place)."""
    entry = {k: current.entry[k] for k in ("index_type", "factory", "search", "tuning") if k in current.entry}
    entry["retrain"] = kept_entry(current, changed, refilled=True)
    return entry
