"""Filters computed over cached columns agree with the SQL reference they replace."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ragkit.documents import Document
from ragkit.store.filters import Filters
from ragkit.store.sqlite import Store


@pytest.fixture()
def store(tmp_path):
    s = Store.create(tmp_path / "s.sqlite")
    rows = []
    dates = [None, "2024-01-01", "2024-06-30", "2025-01-01", "2025-12-31", "2024-06-30T10:00"]
    sources = ["/data/news/a.jsonl", "/data/news/2024/b.txt", "/other/c.md", "rel/news/d.txt", "/data/Ещё/е.txt"]
    docs = [Document(f"d{i}", f"text {i}", date=date, source=source)
            for i, (date, source) in enumerate(itertools.islice(itertools.product(dates, sources), 30))]
    pid = 0
    for i, row in enumerate(s.add_documents(docs, [False] * len(docs))):
        for _ in range(1 + i % 3):
            rows.append((pid, row, 0, 4))
            pid += 1
    s.add_passages(rows)
    s.commit()
    yield s
    s.close()


def reference(store: Store, filters: Filters) -> list[int]:
    where, params = filters.sql()
    return sorted(r[0] for r in store._conn.execute(
        f"SELECT p.id FROM passages p JOIN documents d ON d.id = p.doc WHERE {where}", params))


@pytest.mark.parametrize("since,until,source", [
    ("2024-06-30", None, None), (None, "2024-06-30", None), ("2024-01-02", "2025-01-01", None),
    (None, None, "*.txt"), (None, None, "news/*"), (None, None, "/data/*"), (None, None, "Ещё/*"),
    ("2025-01-01", None, "*.jsonl"), (None, None, "nothing-matches"),
])
def test_allowed_passages_match_the_sql_reference(store, since, until, source):
    filters = Filters(since=since, until=until, source=source)
    got = store.allowed_passages(filters)
    assert got.dtype == np.int64
    assert got.tolist() == reference(store, filters)
