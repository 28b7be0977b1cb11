"""The vector index: FAISS index types behind one class, searched exact or with tuned parameters.

Vectors are unit length (:func:`ragkit.vectors.exact.l2_normalize`): inner product is cosine.
Index types come from FAISS factory strings (``"Flat"``, ``"HNSW32"``, ``"IVF1024,SQ8"``...);
ids are ragkit passage ids kept by an ``IDMap2`` wrapper, so ids survive removal and rebuilds.

Exact (``Flat``) search of a few queries runs in NumPy, not FAISS: one BLAS matrix-vector
product over the stored matrix and an exact top-k by threshold, which runs near the memory
bandwidth (FAISS's own batch-1 path scans at about a third of it on this CPU). Approximate
types are searched by FAISS with the parameters tuned at build time (``ragkit.vectors.ann``).

Why this module is long: :class:`VectorIndex` is the one object behind every index type, with
its exact, approximate and filtered search paths and its checked loading; the choice of type
and the tuning live in ``ragkit.vectors.ann`` and ``ragkit.vectors.select``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.errors import IndexFormatError, InvalidArgumentError
from ragkit.vectors.exact import exact_search, faiss_module, top_k_columns

if TYPE_CHECKING:
    import faiss

# A filter that keeps at most this many vectors, or this share of the collection, is searched
# exactly over those vectors: graph and inverted-list searches lose recall when much of the
# collection is filtered out (1M navec vectors, HNSW32 with an id selector: recall@10 0.48 at
# efSearch 64 and 0.83 at 1024 with 3.6 % allowed; exact over those 36k vectors: 9 ms a query).
_EXACT_FILTER_MAX = 20_000
_EXACT_FILTER_SHARE = 0.2
_MAX_WIDENED = 4.0  # a wider filter widens efSearch / nprobe by 1 / share, at most this much
# Fewer queries than this per call run FAISS on one OpenMP thread (see _threads_for).
_SINGLE_THREAD_BELOW = 8
# Search parameters ragkit understands, by the FAISS index class that takes them.
PARAMETERS = ("efSearch", "nprobe", "k_factor")
# Candidates examined per insertion into an HNSW graph (FAISS's default: 40). On 300k navec-ru
# vectors with real headline queries, HNSW32 built with 80 reached recall@10 0.945 at efSearch
# 256 and 0.967 at 512, where 40 gave 0.903 and 0.935 (and 0.942 at most at 1M, efSearch 2048);
# the build took 1.7x as long (253 s against 151 s, 2 loaded cores). M 48 with 40 lay between.
HNSW_EF_CONSTRUCTION = 80












class VectorIndex:
    """A FAISS index of unit vectors searched by inner product, keyed by int64 passage ids.

    ``params`` are the index type's search parameters (``efSearch``, ``nprobe``, ``k_factor``),
    tuned at build time; a search for more than 10 hits widens them to at least ``k``.
    """

    def __init__(self, index: faiss.Index, factory: str, params: Mapping[str, float] | None = None,
                 tombstones: int = 0) -> None:
        self._index = index
        self.factory = factory
        self.params: dict[str, float] = dict(params or {})
        self.tombstones = int(tombstones)  # stored vectors of removed passages (id -1), never returned
        self._inner = faiss_module().downcast_index(index.index) if hasattr(index, "id_map") else index
        self._matrix: np.ndarray | None = None
        self._ids: np.ndarray | None = None
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self._subset: tuple[tuple[int, int], np.ndarray] | None = None  # the last filter's vectors

    @classmethod
    def create(cls, dimension: int, factory: str = "Flat") -> VectorIndex:
        faiss = faiss_module()
        spec = factory if factory.upper().startswith("IDMAP") else f"IDMap2,{factory}"
        try:
            index = faiss.index_factory(int(dimension), spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise InvalidArgumentError(f"invalid FAISS factory string {factory!r}") from exc
        if not hasattr(index, "id_map"):
            raise InvalidArgumentError(f"FAISS factory string {factory!r} cannot hold passage ids")
        made = cls(index, factory)
        if hasattr(made._inner, "hnsw"):
            made._inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return made

    def emptied(self) -> VectorIndex:
        """A copy of this index, trained as it is (quantiser, codebooks, parameters), holding no vectors."""
        faiss = faiss_module()
        # not clone_index: a mapped index's clone views the file, and reset() then aborts FAISS
        copy = faiss.deserialize_index(faiss.serialize_index(self._index))
        copy.reset()
        return VectorIndex(copy, self.factory, self.params)

    # -- facts -----------------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        return int(self._index.d)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def live(self) -> int:
        """The stored vectors that belong to passages (all of them but the tombstones)."""
        return len(self) - self.tombstones

    @property
    def updatable(self) -> bool:
        """Whether an update can add and drop vectors in place (:meth:`relabel`): approximate
        types searched without a refine stage, which cannot pass the tombstone filter on."""
        return not self.exact and "k_factor" not in self.tunable

    @property
    def exact(self) -> bool:
        """True for an exact (``Flat``) index, searched in NumPy."""
        return type(self._inner).__name__ in ("IndexFlatIP", "IndexFlat")

    @property
    def tunable(self) -> tuple[str, ...]:
        """The search parameters this index type has (empty for exact search)."""
        kind = type(self._inner).__name__
        if kind.startswith("IndexRefine"):
            return ("nprobe", "k_factor") if _ivf(self._inner) is not None else ("efSearch", "k_factor")
        if kind.startswith("IndexHNSW"):
            return ("efSearch",)
        if _ivf(self._inner) is not None:
            return ("nprobe",)
        return ()

    @property
    def nlist(self) -> int | None:
        """The number of inverted lists of an IVF type (None for other types)."""
        ivf = _ivf(self._inner)
        return None if ivf is None else int(ivf.nlist)

    def ids(self) -> np.ndarray:
        """Every stored id, in storage order."""
        if self._ids is None:
            self._ids = faiss_module().vector_to_array(self._index.id_map).astype(np.int64)
        return self._ids

    # -- writing ---------------------------------------------------------------------------
    def train(self, sample: np.ndarray) -> None:
        """Train quantisers (IVF centroids, PQ/SQ codebooks) on a sample; no-op when not needed."""
        if self._index.is_trained:
            return
        ivf = _ivf(self._inner)
        if ivf is not None:
            ivf.cp.niter = 10  # 10 k-means rounds instead of 25: the same recall after tuning, 2.5x faster
        self._index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add_in_pieces(self, ids: np.ndarray, vectors: np.ndarray, advance: Callable[[int], None],
                      step: int = 65_536) -> None:
        """:meth:`add` in pieces of ``step`` vectors, calling ``advance(piece size)`` after each."""
        for lo in range(0, len(ids), step):
            self.add(ids[lo:lo + step], vectors[lo:lo + step])
            advance(min(step, len(ids) - lo))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dimension:
            raise InvalidArgumentError(f"expected vectors of dimension {self.dimension}, got {x.shape}")
        if not self._index.is_trained:
            self.train(x)
        self._index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
        ivf = _ivf(self._inner)
        if ivf is not None and ivf.direct_map.type == 0:
            ivf.make_direct_map()  # reconstruct(id), needed by hybrid scoring and filtered search
        self._matrix = self._ids = self._sorted = self._subset = None

    def relabel(self, new_of_old: np.ndarray) -> None:
        """Give each stored vector its passage's id in the next generation (``new_of_old[old id]``),
        and removed passages' vectors (-1 there) the id -1: tombstones that searches skip, so an
        update neither rebuilds a graph nor re-encodes a list. Retraining past the share
        (:mod:`ragkit.build.refill`) writes the index afresh without them."""
        faiss = faiss_module()
        ids = self.ids()
        out = np.full(ids.shape, -1, dtype=np.int64)
        valid = (ids >= 0) & (ids < len(new_of_old))
        out[valid] = new_of_old[ids[valid]]
        faiss.copy_array_to_vector(out, self._index.id_map)
        self._index.construct_rev_map()
        self.tombstones = int(np.count_nonzero(out < 0))
        self._matrix = self._ids = self._sorted = self._subset = None

    def merge_from(self, other: VectorIndex) -> None:
        """Move the vectors of ``other`` (same type, same trained quantisers) into this index.

        FAISS merges flat and inverted-list indexes only (HNSW and refine types raise)."""
        ivf, other_ivf = _ivf(self._inner), _ivf(other._inner)
        for part in (ivf, other_ivf):  # FAISS merges inverted lists without their direct maps
            if part is not None and part.direct_map.type != 0:
                part.set_direct_map_type(0)
        faiss = faiss_module()
        before = len(self)
        try:  # the inner index takes the other's entries as positions before..; the id map follows
            self._inner.merge_from(other._inner, before if ivf is not None else 0)
        except RuntimeError as exc:
            raise InvalidArgumentError(f"FAISS cannot merge {self.factory!r} indexes: {str(exc).splitlines()[0]}") from exc
        ids = np.concatenate([faiss.vector_to_array(self._index.id_map), faiss.vector_to_array(other._index.id_map)])
        faiss.copy_array_to_vector(ids.astype(np.int64), self._index.id_map)
        self._index.ntotal = self._inner.ntotal
        self._index.construct_rev_map()
        if ivf is not None:
            ivf.make_direct_map()
        self._matrix = self._ids = self._sorted = self._subset = None

    def to_bytes(self) -> np.ndarray:
        """The whole index as FAISS writes it (uint8), to ship a trained or filled index between processes."""
        return faiss_module().serialize_index(self._index)

    @classmethod
    def from_bytes(cls, data: np.ndarray, factory: str) -> VectorIndex:
        return cls(faiss_module().deserialize_index(np.ascontiguousarray(data, dtype=np.uint8)), factory)

    # -- search ----------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        params: Mapping[str, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each of shape (n_queries, k); missing hits have id -1.

        ``allowed`` restricts the search to these ids (a filter applied before ranking, so
        ``k`` hits come back whenever ``k`` allowed vectors exist). ``params`` override the
        tuned search parameters.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        k = max(1, min(int(k), len(self))) if len(self) else 1
        if self.exact:
            if allowed is None:
                scores, rows = exact_search(self.matrix(), q, k)
                return scores, _take(self.ids(), rows)
            return self._search_subset(q, k, allowed)
        if allowed is not None and len(allowed) <= max(_EXACT_FILTER_MAX, 8 * k, _EXACT_FILTER_SHARE * len(self)):
            return self._search_subset(q, k, allowed)
        settings = {**self.params, **(params or {})}
        with _threads_for(q.shape[0]):
            return self._search_approximate(q, k, allowed, settings)

    def _search_approximate(self, q: np.ndarray, k: int, allowed: np.ndarray | None,
                            settings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None:
            live = faiss_module().IDSelectorRange(0, 2**62) if self.tombstones else None  # no tombstone comes back
            return self._index.search(q, k, params=self._parameters(settings, k, live))
        if "k_factor" in self.tunable:  # FAISS cannot pass an id filter through a refine stage
            return self._overfetch(q, k, allowed, settings)
        widen = min(len(self) / max(len(allowed), 1), _MAX_WIDENED)
        widened = {key: value * widen for key, value in settings.items()}  # efSearch or nprobe
        faiss = faiss_module()
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        scores, ids = self._index.search(q, k, params=self._parameters(widened, k, selector))
        if (ids < 0).any():  # the filtered graph or lists ran dry: answer exactly
            return self._search_subset(q, k, allowed)
        return scores, ids

    def _search_subset(self, q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the allowed ids only."""
        present = self._present(_sorted_unique(np.asarray(allowed, dtype=np.int64)))
        if self.exact and present.size * 8 > len(self):  # a wide filter: score everything, mask the rest
            keep = np.zeros(len(self), dtype=bool)
            keep[self._rows_of(present)] = True
            all_scores = self.matrix() @ q.T
            all_scores[~keep] = -np.inf
            scores, rows = top_k_columns(all_scores, k)
            return scores, _take(self.ids(), rows)
        key = (present.size, hash(present.tobytes()))
        if self._subset is not None and self._subset[0] == key:
            vectors = self._subset[1]  # the same filter again (a batch of queries, or pages)
        elif self.exact:
            vectors = self.matrix()[self._rows_of(present)]
        else:
            vectors = self.reconstruct(present) if present.size else np.zeros((0, self.dimension), np.float32)
        self._subset = (key, vectors)
        scores, rows = exact_search(vectors, q, k)
        return scores, _take(present, rows)

    def _overfetch(self, q: np.ndarray, k: int, allowed: np.ndarray, settings: dict[str, float]):  # noqa: ANN202
        """Search unfiltered for more hits, keep the allowed ones; exact fallback when short."""
        share = max(len(allowed) / max(len(self), 1), 1e-3)
        wide = min(len(self), int(np.ceil(2 * k / share)))
        scores, ids = self._index.search(q, wide, params=self._parameters(settings, wide, None))
        keep = np.isin(ids, allowed)
        out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
        for j in range(q.shape[0]):
            found_s, found_i = scores[j][keep[j]][:k], ids[j][keep[j]][:k]
            if found_i.shape[0] < k:
                return self._search_subset(q, k, allowed)
            out_s[j], out_i[j] = found_s, found_i
        return out_s, out_i

    def _parameters(self, settings: Mapping[str, float], k: int, selector: Any) -> Any:
        """FAISS SearchParameters for this index type, widened so that ``k`` hits can come back."""
        faiss = faiss_module()
        inner = self._inner
        refine = type(inner).__name__.startswith("IndexRefine")
        base = faiss.downcast_index(inner.base_index) if refine else inner
        if type(base).__name__.startswith("IndexHNSW"):
            p = faiss.SearchParametersHNSW()
            p.efSearch = int(max(settings.get("efSearch", base.hnsw.efSearch), k))
        elif _ivf(base) is not None:
            p = faiss.SearchParametersIVF()
            p.nprobe = int(min(settings.get("nprobe", _ivf(base).nprobe), _ivf(base).nlist))
        else:
            p = faiss.SearchParameters()
        if selector is not None:
            p.sel = selector
        if not refine:
            return p
        r = faiss.IndexRefineSearchParameters()
        r.k_factor = float(settings.get("k_factor", inner.k_factor))
        r.base_index_params = p
        r._keep = p  # keep the base parameters alive as long as the refine parameters
        return r

    # -- stored vectors --------------------------------------------------------------------
    def matrix(self) -> np.ndarray:
        """The stored vectors of an exact index as an (n, d) float32 view (no copy)."""
        if self._matrix is None:
            if not self.exact:
                raise InvalidArgumentError(f"index type {self.factory!r} does not store exact vectors")
            faiss = faiss_module()
            n, d = len(self), self.dimension
            if n == 0:
                self._matrix = np.zeros((0, d), dtype=np.float32)
            else:
                self._matrix = faiss.rev_swig_ptr(self._inner.get_xb(), n * d).reshape(n, d)
        return self._matrix

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        order, sorted_ids = self._sorted_ids()
        return order[np.searchsorted(sorted_ids, ids)]

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """For each of ``ids``, whether this index stores a vector for it."""
        _, sorted_ids = self._sorted_ids()
        if not len(sorted_ids):
            return np.zeros(len(ids), dtype=bool)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return sorted_ids[pos] == ids

    def _present(self, ids: np.ndarray) -> np.ndarray:
        return ids[self.holds(ids)]

    def _sorted_ids(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sorted is None:
            ids = self.ids()
            order = np.argsort(ids, kind="stable")
            self._sorted = (order, ids[order])
        return self._sorted

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids (exact for Flat and HNSW, approximate for quantised types)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.exact:
            return self.matrix()[self._rows_of(ids)]
        return self._index.reconstruct_batch(ids)

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        faiss = faiss_module()
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, factory: str, dimension: int, params: Mapping[str, float] | None = None,
             *, tombstones: int = 0, mapped: bool = True) -> VectorIndex:
        """Read a vector file, its counts checked against its size first; approximate types are
        memory-mapped unless ``mapped`` is False (an update that adds to a copy in memory)."""
        faiss = faiss_module()
        p = Path(path)
        if not p.is_file() or p.stat().st_size < 16:
            raise IndexFormatError(f"vector file {p} is missing or truncated")
        from ragkit.format.faiss_header import bounded_memory, check_counts

        _, flat = check_counts(p, int(dimension))  # count fields against the file size, before FAISS allocates
        try:
            with bounded_memory(faiss, p.stat().st_size):  # inner arrays (HNSW, IVF) no larger than the file justifies
                # approximate types mapped, not copied (README "Large indexes"); exact ones read:
                # NumPy's product over FAISS's unaligned mapped codes ran 4.6x slower
                index = faiss.read_index(str(p), 0 if flat or not mapped else getattr(faiss, "IO_FLAG_MMAP_IFC", 0))
        except (RuntimeError, MemoryError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, MemoryError) or "deserialization" in first or "bad_alloc" in first:
                raise IndexFormatError(f"vector file {p} is damaged: it claims an array larger than its "
                                       f"{p.stat().st_size} bytes can hold") from exc
            raise IndexFormatError(f"cannot read vector file {p}: {first}") from exc
        if int(index.d) != int(dimension):
            raise IndexFormatError(f"vector file {p} has dimension {index.d}, manifest says {dimension}")
        if not hasattr(index, "id_map"):
            raise IndexFormatError(f"vector file {p} holds no passage ids")
        unknown = set(params or {}) - set(PARAMETERS)
        if unknown:
            raise IndexFormatError(f"unknown search parameter {sorted(unknown)[0]!r} for {p}")
        if not 0 <= int(tombstones) <= int(index.ntotal):
            raise IndexFormatError(f"vector file {p} holds {index.ntotal} vectors, manifest says {tombstones} are removed")
        return cls(index, factory, params, tombstones)


@contextmanager
def _threads_for(queries: int) -> Iterator[None]:
    """One OpenMP thread for a handful of queries: FAISS splits a single query's graph or list
    scan across threads, and on 2 busy cores the hand-offs cost more than they save (1M
    vectors, IVF-SQ8 at batch 1: 274 queries/s on one thread, 60 on two)."""
    if queries >= _SINGLE_THREAD_BELOW:
        yield
        return
    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _ivf(index: Any) -> Any:
    """The IVF index inside ``index`` (IVF itself, or under a refine stage), else None."""
    faiss = faiss_module()
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _sorted_unique(ids: np.ndarray) -> np.ndarray:
    """``np.unique(ids)``, at the cost of one comparison pass when ids already are (a store's
    filter result is): NumPy 2's hashing unique took 200 ms over 500k sorted ids."""
    if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return ids
    ids = np.sort(ids)
    return ids[np.concatenate(([True], ids[1:] != ids[:-1]))]


def _take(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Map row positions to ids, keeping -1 for missing hits."""
    out = np.full(rows.shape, -1, dtype=np.int64)
    found = rows >= 0
    out[found] = ids[rows[found]]
    return out
