"""Tests of ragkit.build.units: the corpus cut into units of files and JSONL line ranges, read piece
by piece and merged in order, gives exactly what one local read gives (real files in tmp_path)."""

from __future__ import annotations

import builtins
import gzip
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ragkit.ingest.jsonl as jsonl_module
from ragkit.build.units import Piece, load_piece, pack_unit, plan_units, unpack_unit
from ragkit.ingest.loaders import LoadReport, MergedStream, iter_documents, load_file, merged_documents, planned_files

# --------------------------------------------------------------------------- helpers


def jsonl_bytes(records: list[object], end: str = "\n") -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + end for r in records).encode("utf-8")


def read_local(paths: list[Path]) -> tuple[list, LoadReport]:
    report = LoadReport()
    return list(iter_documents(paths, report)), report


def read_units(units: list[list[Piece]], report: LoadReport, ship: bool = True) -> list:
    """What a streaming build does: each unit read (shipped as bytes both ways), merged in order."""
    stream = MergedStream(report)
    docs = []
    for unit in units:
        for piece in unpack_unit(pack_unit(unit)) if ship else unit:
            docs.extend(stream.take(piece.skips_before, load_piece(piece)))
    stream.finish()
    return docs


def aims(units: list[list[Piece]], total: int, largest: int, smallest: int, parts: int) -> list[int]:
    out, left = [], total
    for unit in units:
        out.append(max(1, min(largest, max(smallest, left // parts))))
        left -= sum(p.size for p in unit)
    return out


def check_plan(planned: list[tuple[Path, str, int]], units: list[list[Piece]], *, largest: int, files: int = 64,
               smallest: int = 64 << 10, parts: int = 1) -> None:
    """Every planned file once, in order; ranges contiguous, at line starts, numbered right; units
    within their aims and the ``files`` cap, each full unless it is the last."""
    pieces = [p for unit in units for p in unit]
    order = [p.path for i, p in enumerate(pieces) if i == 0 or pieces[i - 1].path != p.path]
    assert order == [str(path) for path, _, _ in planned]  # each file once, its pieces together, in order
    sizes = {str(path): os.stat(path).st_size if path.exists() else 0 for path, _, _ in planned}
    for path, doc_id, before in planned:
        mine = [p for p in pieces if p.path == str(path)]
        assert all((p.doc_id, p.skips_before) == (doc_id, before) for p in mine)
        if len(mine) == 1 and mine[0].whole:
            assert mine[0].size == sizes[str(path)]
            continue
        assert path.name.lower().endswith(".jsonl")
        data = path.read_bytes()
        assert mine[0].start == 0 and mine[-1].end is None
        for a, b in zip(mine, mine[1:]):
            assert a.end == b.start and a.start < a.end
        for p in mine:
            assert p.start == 0 or data[p.start - 1:p.start] == b"\n"  # a line start
            assert p.first_line == 1 + data[:p.start].count(b"\n")
            assert p.size == (p.end if p.end is not None else len(data)) - p.start
    total = sum(sizes.values())
    assert sum(p.size for p in pieces) == total
    for k, (unit, aim) in enumerate(zip(units, aims(units, total, largest, smallest, parts))):
        assert 1 <= len(unit) <= files
        assert sum(p.size for p in unit[:-1]) < aim  # it ends at the first piece that reaches the aim
        last = unit[-1]
        if k < len(units) - 1:
            assert sum(p.size for p in unit) >= aim or len(unit) == files or last.end is not None
        for p in unit:
            if not p.whole:
                body = Path(p.path).read_bytes()[p.start:p.end]
                assert p.size <= aim or b"\n" not in body[:-1], "a range over the aim is a single line"


# --------------------------------------------------------------------------- planning


def test_big_jsonl_is_split_at_line_starts(tmp_path: Path) -> None:
    records = [{"_id": f"d{i}", "text": "слово " * (i % 7 + 1)} for i in range(300)]
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl_bytes(records))
    report = LoadReport()
    planned = planned_files([path], report)
    units = plan_units(planned, 2000, smallest=500)
    check_plan(planned, units, largest=2000, smallest=500)
    assert len(units) > 5 and all(len(u) == 1 for u in units)
    assert read_units(units, report) == read_local([path])[0]


def test_guided_units_shrink_toward_the_end(tmp_path: Path) -> None:
    line = json.dumps({"text": "x" * 90}) + "\n"  # 104 bytes a line
    path = tmp_path / "even.jsonl"
    path.write_text(line * 2000)
    total = len(line) * 2000
    planned = planned_files([path], LoadReport())
    units = plan_units(planned, total, smallest=2000, parts=4)
    check_plan(planned, units, largest=total, smallest=2000, parts=4)
    sizes = [sum(p.size for p in u) for u in units]
    assert total // 4 - len(line) < sizes[0] <= total // 4
    assert all(b <= a + len(line) for a, b in zip(sizes, sizes[1:]))  # never grows (but for line alignment)
    assert sizes[-2] <= 2000 + len(line) and sizes[-1] <= 2000
    flat = plan_units(planned, total // 8, smallest=2000)  # parts=1: units of the largest size while they last
    assert [sum(p.size for p in u) for u in flat][:-1] == [total // 8 // len(line) * len(line)] * (len(flat) - 1)


def test_files_cap_and_whole_types(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"t{i}.txt").write_text(f"Текст номер {i}.")
    big = jsonl_bytes([{"text": f"Строка {i}."} for i in range(400)])
    (tmp_path / "u.jsonl.gz").write_bytes(gzip.compress(big, mtime=0))
    (tmp_path / "v.JSONL.GZ").write_bytes(big)  # named gzip, is not: still never read by range
    (tmp_path / "w.md").write_text("# Заголовок\n" + "Абзац.\n" * 500)
    report = LoadReport()
    planned = planned_files([tmp_path], report)
    units = plan_units(planned, 100, smallest=1, files=3)
    check_plan(planned, units, largest=100, smallest=1, files=3)
    assert all(p.whole for u in units for p in u)
    assert [len(u) for u in units] == [3, 3, 3, 2, 1, 1]  # 3 small files a unit; each big one ends a unit
    assert read_units(units, report) == read_local([tmp_path])[0]
    roomy = plan_units(planned, 10 << 20, files=4)
    assert [len(u) for u in roomy] == [4, 4, 4, 1] and all(p.whole for u in roomy for p in u)


def test_plan_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.jsonl").write_bytes(jsonl_bytes([{"text": name * (i + 1)} for i in range(80)]))
    planned = planned_files([tmp_path], LoadReport())
    first = plan_units(planned, 700, smallest=100, parts=3, files=5)
    assert first == plan_units(planned, 700, smallest=100, parts=3, files=5)
    assert first != plan_units(planned, 1400, smallest=100, parts=3, files=5)
    check_plan(planned, first, largest=700, smallest=100, parts=3, files=5)


def test_empty_and_blank_jsonl_are_never_split(tmp_path: Path) -> None:
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\xef\xbb\xbf\n" + b"   \r\n\t\n" * 200)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    report = LoadReport()
    planned = planned_files([tmp_path], report)
    units = plan_units(planned, 10, smallest=1)
    assert [len(u) for u in units] == [1, 1] and all(p.whole for u in units for p in u)
    docs, local = read_local([tmp_path])
    assert read_units(units, report) == docs == []
    assert report.skipped == local.skipped == [(str(blank), "empty file"), (str(empty), "empty file")]


def test_a_line_longer_than_the_aim_is_its_own_range(tmp_path: Path) -> None:
    short = [json.dumps({"text": f"s{i}"}) for i in range(20)]
    lines = short[:10] + [json.dumps({"_id": "long", "text": "л" * 500})] + short[10:]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines))  # no final newline
    report = LoadReport()
    planned = planned_files([path], report)
    units = plan_units(planned, 60, smallest=1)
    check_plan(planned, units, largest=60, smallest=1)
    long = [p for u in units for p in u if p.size > 60]
    assert len(long) == 1 and long[0].first_line == 11 and long[0].end is not None
    tail = plan_units(planned, len(path.read_bytes()) - 5, smallest=1)  # a last line with no newline stays whole
    assert tail[-1][-1].end is None and tail[-1][-1].first_line > 1
    assert read_units(units, report) == read_local([path])[0]


# --------------------------------------------------------------------------- reading pieces


def test_over_long_lines_are_dropped_alike_in_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonl_module, "MAX_TEXT_BYTES", 64)
    lines = [json.dumps({"_id": f"d{i}", "text": "x" * (10 if i % 3 else 90)}) for i in range(30)]
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(lines) + "\n")
    docs, local = read_local([path])
    assert len(local.skipped) == 10 and all("line longer than" in why for _, why in local.skipped)
    for largest in (1, 40, 150, 700):
        report = LoadReport()
        planned = planned_files([path], report)
        units = plan_units(planned, largest, smallest=1)
        check_plan(planned, units, largest=largest, smallest=1)
        assert read_units(units, report) == docs
        assert report == local


def test_mixed_files_with_duplicates_across_files_and_ranges(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Первая новость.", encoding="utf-8")
    (corpus / "b.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes([{"_id": "g", "text": "Сжатый."},
                                                                    {"_id": "dup", "text": "Первый дубль."}])))
    records: list[object] = [{"_id": f"r{i}", "text": f"Запись {i}. " * 3} for i in range(60)]
    records[5] = {"_id": "dup", "text": "Второй дубль (через файлы)."}
    records[50] = {"_id": "r7", "text": "Дубль внутри файла, в другом куске."}
    records[30] = {"text": ""}
    (corpus / "c.jsonl").write_bytes(jsonl_bytes(records))
    (corpus / "d.md").write_text("# Заметка\nТекст заметки.", encoding="utf-8")
    (corpus / "locked.jsonl").write_bytes(jsonl_bytes([{"text": "secret"}] * 50))
    (corpus / "e.txt").write_text("Последний.", encoding="utf-8")
    (corpus / "sub").mkdir()
    (corpus / "sub" / "dup.txt").write_text("Файл.", encoding="utf-8")
    (corpus / "sub" / "c.jsonl").write_bytes(jsonl_bytes([{"text": "no id: the default id of sub/c"}]))
    os.symlink(tmp_path / "nowhere", corpus / "c2.jsonl")  # a walk's skip between two files
    extra = tmp_path / "extra.jsonl"
    extra.write_bytes(jsonl_bytes([{"_id": "r3" if i == 9 else f"x{i}", "text": "Ещё."} for i in range(40)]))
    paths = [tmp_path / "missing.txt", corpus, corpus / "a.txt", extra, tmp_path / "nowhere.md"]

    real_open = builtins.open

    def locked_open(file, *args, **kwargs):  # root ignores file modes: the PermissionError is simulated
        if os.fspath(file).endswith("locked.jsonl"):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", locked_open)
    docs, local = read_local(paths)
    report = LoadReport()
    planned = planned_files(paths, report)
    units = plan_units(planned, 300, smallest=1, parts=2, files=3)
    check_plan(planned, units, largest=300, smallest=1, parts=2, files=3)
    c_pieces = [p for u in units for p in u if p.path.endswith("corpus/c.jsonl")]
    assert len(c_pieces) > 3 and len([p for u in units for p in u if p.path == str(extra)]) > 1
    assert len({before for _, _, before in planned}) > 2  # the walk's skips fall between the files
    merged = read_units(units, report)
    assert merged == docs and report == local
    why = dict(local.skipped)
    assert why[f"{corpus / 'c.jsonl'}:6"] == f"duplicate id 'dup' (first seen in {corpus / 'b.jsonl.gz'}:2)"
    assert why[f"{corpus / 'c.jsonl'}:51"] == f"duplicate id 'r7' (first seen in {corpus / 'c.jsonl'}:8)"
    assert why[str(corpus / "locked.jsonl")] == "cannot read: Permission denied"
    assert why[str(tmp_path / "missing.txt")] == "path does not exist"
    assert why[f"{extra}:10"] == f"duplicate id 'r3' (first seen in {corpus / 'c.jsonl'}:4)"
    assert "already loaded" in why[str(corpus / "a.txt")] and "broken symlink" in why[str(corpus / "c2.jsonl")]
    assert "c:1" in [d.id for d in docs]  # sub/c.jsonl's line without an id: the stem, not the relative path


def test_a_file_gone_before_planning_is_one_whole_piece(tmp_path: Path) -> None:
    keep = tmp_path / "keep.jsonl"
    keep.write_bytes(jsonl_bytes([{"text": f"k{i}"} for i in range(40)]))
    gone = tmp_path / "gone.jsonl"
    gone.write_bytes(jsonl_bytes([{"text": f"g{i}"} for i in range(40)]))
    report = LoadReport()
    planned = planned_files([gone, keep], report)
    whole = [load_file(path, doc_id) for path, doc_id, _ in planned]  # before it goes
    gone.unlink()
    units = plan_units(planned, 50, smallest=1)
    assert units[0][0] == Piece(str(gone), "gone.jsonl", 0, size=0)
    check_plan(planned, units, largest=50, smallest=1)
    whole[0] = load_file(gone, "gone.jsonl")
    expected_report = LoadReport(files=report.files, skipped=list(report.skipped))
    expected = list(merged_documents(planned, whole, expected_report))
    assert read_units(units, report) == expected and report == expected_report
    assert report.skipped[0][0] == str(gone) and report.skipped[0][1].startswith("cannot read")


def test_unit_round_trip_keeps_undecodable_paths(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.jsonl")  # not UTF-8: lone surrogates in the str
    path = tmp_path / name
    path.write_bytes(jsonl_bytes([{"text": f"Кафе {i}."} for i in range(30)]))
    report = LoadReport()
    planned = planned_files([tmp_path], report)
    units = plan_units(planned, 100, smallest=1)
    assert len(units) > 2
    for unit in units:
        data = pack_unit(unit)
        assert isinstance(data, bytes) and unpack_unit(data) == unit
    assert read_units(units, report) == read_local([tmp_path])[0]
    assert unpack_unit(pack_unit([])) == []


def test_load_piece_of_a_whole_file_is_load_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\n\n")
    piece = Piece(str(path), "a.jsonl", 0, size=2)
    assert load_piece(piece) == load_file(path, "a.jsonl")
    assert load_piece(piece).skips == [(str(path), "empty file")]
    with pytest.raises(ValueError, match="plain JSONL"):
        load_piece(Piece(str(tmp_path / "b.txt"), "b.txt", 0, start=0, end=5))


# --------------------------------------------------------------------------- property


_IDS = st.sampled_from(["a", "b", "c", "д", "1"])
_TEXT = st.text(alphabet=st.sampled_from(list("ab ц\u00e9\U0001f600.\t")), max_size=12)
_RECORD = st.one_of(
    st.builds(lambda i, t: json.dumps({"_id": i, "text": t}, ensure_ascii=False), _IDS, _TEXT),
    st.builds(lambda t, x: json.dumps({"text": t, "extra": x}, ensure_ascii=x), _TEXT, st.booleans()),
    st.builds(lambda i: json.dumps({"id": i, "content": "c"}), st.integers(0, 3)),
    st.sampled_from(["", "   ", "\t", "{bad", "[1]", '{"title": "no text"}', '"s"', "\u00e9\u00e9", '{"text": 5}']),
)
_LINES = st.lists(_RECORD, max_size=25)
_FILE = st.tuples(_LINES, st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans())  # lines, end, BOM, final


def _content(lines: list[str], end: str, bom: bool, final: bool) -> bytes:
    body = end.join(lines) + (end if final and lines else "")
    return (b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(_FILE, min_size=1, max_size=3), largest=st.integers(1, 400), smallest=st.integers(1, 60),
       parts=st.integers(1, 4), cap=st.integers(1, 4), long_limit=st.sampled_from([None, 30]))
def test_pieces_merged_equal_one_local_read(tmp_path: Path, files: list, largest: int, smallest: int,
                                            parts: int, cap: int, long_limit: int | None) -> None:
    root = tmp_path / "corpus"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for i, spec in enumerate(files):
        (root / f"f{i}.jsonl").write_bytes(_content(*spec))
    (root / "z.txt").write_text("Текст.", encoding="utf-8")
    os.symlink(root / "nowhere", root / "f0x.jsonl")  # a walk's skip after f0, and one after the files
    paths = [root, root / "f0.jsonl"]
    limit = long_limit if long_limit is not None else jsonl_module.MAX_TEXT_BYTES
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jsonl_module, "MAX_TEXT_BYTES", limit)
        docs, local = read_local(paths)
        report = LoadReport()
        planned = planned_files(paths, report)
        units = plan_units(planned, largest, files=cap, smallest=smallest, parts=parts)
        check_plan(planned, units, largest=largest, files=cap, smallest=smallest, parts=parts)
        merged = read_units(units, report, ship=bool(largest % 2))
    assert merged == docs
    assert report == local  # files, documents, and every skip in the same order
