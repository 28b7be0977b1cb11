"""Tests of ragkit.ingest.loaders on real files in tmp_path (and the shared seed article)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit.documents import Document
from ragkit.ingest.loaders import (
    SUPPORTED_SUFFIXES,
    LoadReport,
    NotTextError,
    iter_documents,
    load_documents,
    read_text,
    source_files,
)

SEED = Path(__file__).resolve().parents[1] / "seeds" / "000_aad6b44fa40b1e2f.txt"
if not SEED.exists():  # the same article in the shared folder beside the checkout
    SEED = Path("/work/shared/seeds/000_aad6b44fa40b1e2f.txt")

SHORT_RU = "Съешь же ещё этих мягких французских булок, да выпей чаю."
LONG_RU = (
    "Мэр города рассказал журналистам о планах на следующий год.\n"
    "По его словам, в городе построят новые школы, больницы и дороги, а старые парки "
    "приведут в порядок. Жители смогут сами выбрать, какие дворы благоустроить первыми.\n\n"
    "Эксперты считают, что бюджет на эти работы вырастет почти на треть. "
    "Ещё недавно подобные программы казались невозможными, но теперь их обсуждают всерьёз.\n"
) * 5


def write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def write_jsonl(path: Path, records: list[object], gz: bool = False) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def reasons(report: LoadReport) -> dict[str, str]:
    return dict(report.skipped)


# --------------------------------------------------------------------------- text files


@pytest.mark.skipif(not SEED.exists(), reason="shared seed article not available")
def test_seed_article() -> None:
    docs, report = load_documents([SEED])
    assert report.summary() == "1 file, 1 document, 0 skipped"
    (doc,) = docs
    assert doc.id == SEED.name
    assert doc.source == str(SEED)
    assert doc.date == "2025-10-22"
    assert doc.text.startswith("Мэр Москвы Сергей Собянин")
    assert "date 2025" not in doc.text
    # The first line is long, so the title is the first sentence, cut at a word boundary.
    assert doc.title.startswith("Мэр Москвы Сергей Собянин")
    assert doc.title.endswith("…") and len(doc.title) <= 150
    assert doc.text.startswith(doc.title[:-1])
    assert doc.text == SEED.read_text(encoding="utf-8").strip()[len("date 2025-10-22") :].strip()


def test_markdown_heading_title(tmp_path: Path) -> None:
    write(tmp_path / "a.md", "# Hello world\n\nBody of the *article*.\n")
    write(tmp_path / "b.md", "## Closed heading ##\nBody.")
    write(tmp_path / "c.txt", "# Not markdown\nBody.")
    write(tmp_path / "d.md", "# Only a heading")
    docs, _ = load_documents([tmp_path])
    titles = {d.id: d.title for d in docs}
    assert titles == {
        "a.md": "Hello world",
        "b.md": "Closed heading",
        "c.txt": "# Not markdown",
        "d.md": "Only a heading",
    }
    assert docs[0].text == "# Hello world\n\nBody of the *article*."  # the title stays in the text


@pytest.mark.parametrize(
    ("content", "date", "text"),
    [
        ("date 2024-02-29 Body on the same line.", "2024-02-29", "Body on the same line."),
        ("date 2024-02-29\nBody on the next line.", "2024-02-29", "Body on the next line."),
        ("  \n date 2024-01-05  \r\n\r\n  After blank lines. \n", "2024-01-05", "After blank lines."),
        ("DATE 2024-01-05 Upper-case keyword.", "2024-01-05", "Upper-case keyword."),
        ("date 2023-02-29 Not a leap year.", None, "date 2023-02-29 Not a leap year."),
        ("date 2024-13-01 No such month.", None, "date 2024-13-01 No such month."),
        ("date 2024-01-05x Not a header.", None, "date 2024-01-05x Not a header."),
        ("The date 2024-01-05 is not at the start.", None, "The date 2024-01-05 is not at the start."),
    ],
)
def test_date_header(tmp_path: Path, content: str, date: str | None, text: str) -> None:
    path = write(tmp_path / "a.txt", content)
    docs, report = load_documents([path])
    assert report.skipped == []
    assert (docs[0].date, docs[0].text) == (date, text)


def test_date_header_without_body_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "date 2024-01-05\n\n")
    docs, report = load_documents([path])
    assert docs == []
    assert report.skipped == [(str(path), "no text after the date header")]


def test_titles(tmp_path: Path) -> None:
    long_sentence = " ".join(["слово"] * 60) + ". Второе предложение."
    write(tmp_path / "first_line.txt", "Short title\nThe body. More body.")
    write(tmp_path / "one_line.txt", "First sentence here! Second sentence.")
    write(tmp_path / "abbrev.txt", "Завод открыли в 2025 г. в Москве. Дальше текст.")
    write(tmp_path / "long.txt", long_sentence)
    write(tmp_path / "numbers_only.txt", "12345 678\n90")
    docs, _ = load_documents([tmp_path])
    titles = {d.id: d.title for d in docs}
    assert titles["first_line.txt"] == "Short title"
    assert titles["one_line.txt"] == "First sentence here!"
    assert titles["abbrev.txt"] == "Завод открыли в 2025 г. в Москве."
    assert titles["numbers_only.txt"] == "numbers_only"
    long_title = titles["long.txt"]
    assert len(long_title) <= 150 and long_title.endswith("слово…")
    assert long_sentence.startswith(long_title[:-1])


# --------------------------------------------------------------------------- JSONL


def test_jsonl_fields(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "news.jsonl",
        [
            {"_id": "a1", "id": "no", "title": " A ", "text": "Alpha.", "date": "2017-04-18", "url": "u"},
            {"id": 42, "content": "Beta.", "date": "2017-04-18T10:15:00+03:00"},
            {"text": "Gamma.", "date": "18.04.2017"},
            {"_id": None, "id": "d4", "text": "Delta.", "date": 20170418},
            {"_id": "e5", "text": "Epsilon.", "date": "2017-02-30"},
        ],
    )
    docs, report = load_documents([path])
    assert report.skipped == []
    assert docs == [
        Document(id="a1", text="Alpha.", title="A", date="2017-04-18", source=str(path), url="u"),
        Document(id="42", text="Beta.", date="2017-04-18", source=str(path)),
        Document(id="news:3", text="Gamma.", source=str(path)),
        Document(id="d4", text="Delta.", source=str(path)),
        Document(id="e5", text="Epsilon.", source=str(path)),
    ]


def test_jsonl_gz_is_streamed(tmp_path: Path) -> None:
    records = [{"_id": str(i), "title": f"T{i}", "text": f"Текст {i}."} for i in range(50)]
    path = write_jsonl(tmp_path / "corpus.jsonl.gz", records, gz=True)
    docs, report = load_documents([path])
    assert report.summary() == "1 file, 50 documents, 0 skipped"
    assert [d.id for d in docs] == [str(i) for i in range(50)]
    assert docs[7].text == "Текст 7." and docs[7].title == "T7"
    # Streaming: the first document is there before the file has been read to the end.
    first = next(iter_documents([path]))
    assert first.id == "0"


def test_jsonl_gz_missing_id_uses_full_stem(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "Corpus.JSONL.GZ", [{"text": "x"}], gz=True)
    docs, _ = load_documents([path])
    assert docs[0].id == "Corpus:1"


def test_beir_corpus(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "beir" / "corpus.jsonl",
        [
            {"_id": "4983", "title": "Microstructural", "text": "Alterations.", "metadata": {}},
            {"_id": "5836", "title": "", "text": "Another abstract.", "metadata": {"pmid": 1}},
        ],
    )
    docs, report = load_documents([path])
    assert report.skipped == []
    assert [(d.id, d.title, d.text) for d in docs] == [
        ("4983", "Microstructural", "Alterations."),
        ("5836", "", "Another abstract."),
    ]


def test_broken_jsonl_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        '{"_id": "ok1", "text": "Good one."}',
        "",
        '{"_id": "bad", "text": ',
        "[1, 2, 3]",
        '{"_id": "notext", "title": "t"}',
        '{"_id": "blank", "text": "  \\n "}',
        '{"_id": "num", "text": 5}',
        '{"_id": ["x"], "text": "list id"}',
        '{"_id": "ok2", "text": "Good two."}',
    ]
    write(path, "\ufeff" + "\r\n".join(lines) + "\n")
    write(tmp_path / "latin.jsonl", b'{"_id": "l1", "text": "caf\xe9"}\n{"_id": "l2", "text": "ok"}\n')
    docs, report = load_documents([path, tmp_path / "latin.jsonl"])
    assert [d.id for d in docs] == ["ok1", "ok2", "l2"]
    skipped = reasons(report)
    latin_line = f"{tmp_path / 'latin.jsonl'}:1"
    assert set(skipped) == {f"{path}:{n}" for n in (3, 4, 5, 6, 7, 8)} | {latin_line}
    assert skipped[f"{path}:3"].startswith("bad JSON")
    assert skipped[f"{path}:4"] == "not a JSON object but list"
    assert skipped[f"{path}:5"] == 'no "text" or "content" field'
    assert skipped[f"{path}:6"] == "empty text"
    assert skipped[latin_line] == "not valid UTF-8"
    assert report.files == 2 and report.documents == 3


def test_damaged_gzip(tmp_path: Path) -> None:
    records = [{"_id": str(i), "text": f"Document number {i}. " * 20} for i in range(2000)]
    good = write_jsonl(tmp_path / "good.jsonl.gz", records, gz=True)
    data = good.read_bytes()
    truncated = write(tmp_path / "truncated.jsonl.gz", data[: len(data) // 2])
    not_gzip = write(tmp_path / "plain.jsonl.gz", '{"_id": "p", "text": "not compressed"}\n')
    report = LoadReport()
    docs = list(iter_documents([truncated, not_gzip], report))
    assert 0 < len(docs) < 2000  # the lines before the damage are kept
    skipped = reasons(report)
    assert "cannot read after line" in skipped[str(truncated)]
    assert skipped[str(not_gzip)].startswith("cannot read")


# --------------------------------------------------------------------------- encodings


def _russian_cases() -> list[tuple[str, str]]:
    cases = []
    for encoding in ("utf-8", "utf-8-sig", "cp1251", "koi8-r", "utf-16"):
        cases += [(encoding, "short"), (encoding, "long")]
    return cases


@pytest.mark.parametrize(("encoding", "size"), _russian_cases())
def test_russian_encodings_round_trip(tmp_path: Path, encoding: str, size: str) -> None:
    original = SHORT_RU if size == "short" else LONG_RU.strip()
    path = write(tmp_path / "ru.txt", original, encoding)
    assert read_text(path) == original
    (doc,) = iter_documents([path])
    assert doc.text == original


@pytest.mark.parametrize(
    "sentence",
    [
        "Привет, мир!",
        "Мэр Москвы рассказал о развитии города.",
        "В ЧАЩАХ ЮГА ЖИЛ БЫ ЦИТРУС? ДА, НО ФАЛЬШИВЫЙ ЭКЗЕМПЛЯР!",
        "Статья про Python и pandas: как читать CSV.",
        "Да",
    ],
)
@pytest.mark.parametrize("encoding", ["cp1251", "koi8-r"])
def test_short_single_byte_russian(tmp_path: Path, sentence: str, encoding: str) -> None:
    # charset-normalizer alone gets most of these wrong (cp1125, Shift-JIS, Big5, ...).
    path = write(tmp_path / "ru.txt", sentence, encoding)
    assert read_text(path) == sentence


@pytest.mark.skipif(not SEED.exists(), reason="shared seed article not available")
@pytest.mark.parametrize("encoding", ["cp1251", "koi8-r"])
def test_seed_in_single_byte_encodings(tmp_path: Path, encoding: str) -> None:
    original = SEED.read_text(encoding="utf-8")
    if encoding == "koi8-r":  # KOI8-R has no guillemets or em dash
        original = original.replace("«", '"').replace("»", '"').replace("—", "-")
    path = write(tmp_path / "seed.txt", original, encoding)
    assert read_text(path) == original


def test_western_single_byte_is_not_read_as_russian(tmp_path: Path) -> None:
    text = "The committee met à huis clos, and the café owners were not invited to the meeting."
    path = write(tmp_path / "fr.txt", text, "cp1252")
    assert not any("\u0400" <= ch <= "\u04ff" for ch in read_text(path))


def test_utf16_with_bom_and_newlines(tmp_path: Path) -> None:
    text = "Первая строка\r\nвторая строка\rтретья"
    expected = "Первая строка\nвторая строка\nтретья"
    assert read_text(write(tmp_path / "le.txt", text, "utf-16")) == expected
    assert read_text(write(tmp_path / "be.txt", b"\xfe\xff" + text.encode("utf-16-be"))) == expected
    assert read_text(write(tmp_path / "u8.txt", b"\xef\xbb\xbf" + text.encode("utf-8"))) == expected


def test_binary_is_not_text(tmp_path: Path) -> None:
    png = write(tmp_path / "img.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    controls = write(tmp_path / "ctl.txt", bytes(range(1, 32)) * 20)
    bad_bom = write(tmp_path / "bom.txt", b"\xef\xbb\xbf\xff\xfe\xfa")
    for path in (png, controls, bad_bom):
        with pytest.raises(NotTextError):
            read_text(path)
    with pytest.raises(ValueError):
        read_text(png)
    docs, report = load_documents([tmp_path])
    assert docs == []
    assert report.files == 3 and len(report.skipped) == 3
    assert reasons(report)[str(png)] == "binary data (contains NUL bytes)"


# --------------------------------------------------------------------------- bad files, ids


def test_empty_and_missing(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.txt", b"")
    blank = write(tmp_path / "blank.md", " \n\t\n")
    empty_jsonl = write(tmp_path / "empty.jsonl", "\n\n")
    missing = tmp_path / "missing.txt"
    unsupported = write(tmp_path / "data.csv", "a,b\n")
    good = write(tmp_path / "good.txt", "Fine.")
    docs, report = load_documents([empty, blank, empty_jsonl, missing, unsupported, good])
    assert [d.id for d in docs] == ["good.txt"]
    skipped = reasons(report)
    assert skipped[str(empty)] == "empty file"
    assert skipped[str(blank)] == "empty file (only whitespace)"
    assert skipped[str(empty_jsonl)] == "empty file"
    assert skipped[str(missing)] == "path does not exist"
    assert skipped[str(unsupported)].startswith("unsupported file type")
    assert report.summary() == "4 files, 1 document, 5 skipped"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions, not root")
def test_unreadable_file_permissions(tmp_path: Path) -> None:
    locked = write(tmp_path / "locked.txt", "secret")
    write(tmp_path / "open.txt", "Readable.")
    locked.chmod(0)
    try:
        docs, report = load_documents([tmp_path])
    finally:
        locked.chmod(0o600)
    assert [d.id for d in docs] == ["open.txt"]
    assert reasons(report)[str(locked)].startswith("cannot read: Permission denied")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root ignores file modes, so the PermissionError the OS would raise is simulated.
    locked = write(tmp_path / "locked.txt", "secret")
    write(tmp_path / "open.txt", "Readable.")
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    docs, report = load_documents([tmp_path])
    assert [d.id for d in docs] == ["open.txt"]
    assert report.skipped == [(str(locked), "cannot read: Permission denied")]


def test_duplicate_ids(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", [{"_id": "x", "text": "First."}, {"_id": "y", "text": "Y."}])
    second = write_jsonl(tmp_path / "b.jsonl", [{"_id": "x", "text": "Second."}])
    write(tmp_path / "one" / "same.txt", "From folder one.")
    write(tmp_path / "two" / "same.txt", "From folder two.")
    docs, report = load_documents([first, second, tmp_path / "one", tmp_path / "two"])
    assert [(d.id, d.text) for d in docs] == [
        ("x", "First."),
        ("y", "Y."),
        ("same.txt", "From folder one."),
    ]
    one, two = tmp_path / "one" / "same.txt", tmp_path / "two" / "same.txt"
    assert report.skipped == [
        (f"{second}:1", f"duplicate id 'x' (first seen in {first}:1)"),
        (str(two), f"duplicate id 'same.txt' (first seen in {one})"),
    ]


def test_same_file_twice_is_loaded_once(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "Once.")
    docs, report = load_documents([tmp_path, path, str(path)])
    assert [d.id for d in docs] == ["a.txt"]
    assert report.files == 1 and len(report.skipped) == 2
    assert all("already loaded" in reason for _, reason in report.skipped)


# --------------------------------------------------------------------------- folders


def make_tree(root: Path) -> None:
    # Written in scrambled order; loading must not depend on it.
    write(root / "z.txt", "Zed.")
    write(root / "sub" / "deeper" / "d.md", "# Deep\nText.")
    write(root / "a.TXT", "Upper-case suffix.")
    write(root / "sub" / "b.txt", "Bee.")
    write_jsonl(root / "sub" / "c.jsonl", [{"_id": "c1", "text": "See."}])
    write(root / "notes.csv", "ignored")
    write(root / "image.png", b"\x89PNG\x00")
    write(root / "archive.gz", b"\x1f\x8b")
    write(root / ".hidden.txt", "ignored")
    write(root / ".git" / "x.txt", "ignored")
    write(root / "sub" / ".cache" / "y.md", "ignored")


def test_recursive_folder(tmp_path: Path) -> None:
    make_tree(tmp_path / "corpus")
    docs, report = load_documents([tmp_path / "corpus"])
    # A folder's files (sorted) come before its subfolders (sorted).
    assert [d.id for d in docs] == ["a.TXT", "z.txt", "sub/b.txt", "c1", "sub/deeper/d.md"]
    assert docs[0].source == str(tmp_path / "corpus" / "a.TXT")
    assert docs[3].source == str(tmp_path / "corpus" / "sub" / "c.jsonl")
    assert report.skipped == []
    assert report.summary() == "5 files, 5 documents, 0 skipped"


def test_deterministic_order_and_source_files(tmp_path: Path) -> None:
    make_tree(tmp_path / "corpus")
    runs = [[d.id for d in iter_documents([tmp_path / "corpus"])] for _ in range(2)]
    assert runs[0] == runs[1]
    files = source_files([tmp_path / "corpus", tmp_path / "corpus" / "z.txt", tmp_path / "missing"])
    root = tmp_path / "corpus"
    expected = ["a.TXT", "z.txt", "sub/b.txt", "sub/c.jsonl", "sub/deeper/d.md"]
    assert files == sorted((root / name for name in expected), key=str)
    assert source_files([root / "sub", root]) == files
    assert source_files(str(root)) == files  # a lone path is one path, not characters


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loops(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write(root / "sub" / "real.txt", "Real text.")
    os.symlink("..", root / "sub" / "back")  # a folder loop
    os.symlink("b.txt", root / "a.txt")  # a file loop
    os.symlink("a.txt", root / "b.txt")
    os.symlink("nowhere.txt", root / "dangling.txt")
    docs, report = load_documents([root, root / "a.txt"])
    assert [d.id for d in docs] == ["sub/real.txt"]
    skipped = reasons(report)
    assert skipped[str(root / "sub" / "back")].startswith("symlink loop")
    assert skipped[str(root / "a.txt")] == "symlink loop"
    assert skipped[str(root / "b.txt")] == "symlink loop"
    assert skipped[str(root / "dangling.txt")].startswith("broken symlink")
    assert source_files([root]) == [root / "sub" / "real.txt"]


def test_symlinked_file_is_read(tmp_path: Path) -> None:
    target = write(tmp_path / "elsewhere" / "t.txt", "Linked text.")
    (tmp_path / "corpus").mkdir()
    os.symlink(target, tmp_path / "corpus" / "link.txt")
    docs, _ = load_documents([tmp_path / "corpus"])
    assert [(d.id, d.text) for d in docs] == [("link.txt", "Linked text.")]


def test_supported_suffixes() -> None:
    assert SUPPORTED_SUFFIXES == (".txt", ".md", ".jsonl", ".jsonl.gz", ".html", ".htm", ".warc", ".warc.gz", ".pdf", ".docx")


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "any.txt"
    path.write_bytes(data)
    try:
        text = read_text(path)
    except NotTextError:
        text = None
    assert text is None or ("\r" not in text)
    report = LoadReport()
    docs = list(iter_documents([path], report))
    assert report.files == 1
    assert len(docs) + len(report.skipped) == 1
    if docs:
        assert docs[0].text and docs[0].text == docs[0].text.strip()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("абвгдеёжзийклмнопрстуфхцчшщъыьэюя АБВЯ.,!?\n"))))
def test_utf8_russian_round_trip(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ru.txt"
    path.write_bytes(text.encode("utf-8"))
    assert read_text(path) == text


# --------------------------------------------------------------------------- read elsewhere


def test_files_read_one_by_one_and_merged_equal_one_local_read(tmp_path: Path) -> None:
    """What a distributed build does (plan here, read each file elsewhere, ship it as JSON, merge in
    plan order) gives the documents, ids, metadata, pages and report of one local read."""
    from messy_tree import messy_tree

    from ragkit.build.batches import load_pieces, pack_loads, unpack_loads
    from ragkit.build.units import Piece, pack_unit, unpack_unit
    from ragkit.ingest.loaders import iter_documents, merged_documents, planned_files

    paths = messy_tree(tmp_path)
    local_report = LoadReport()
    local = list(iter_documents(paths, local_report))
    report = LoadReport()
    planned = planned_files(paths, report)
    shipped = unpack_unit(pack_unit([Piece(str(p), i, before) for p, i, before in planned]))
    loads = unpack_loads(pack_loads(load_pieces(shipped)))
    merged = list(merged_documents(planned, loads, report))
    assert merged == local
    assert (report.files, report.documents, report.skipped) == (local_report.files, local_report.documents,
                                                                local_report.skipped)
    # the tree has what it is for: skips between documents, metadata, pages, a duplicate id across files
    kinds = " ".join(reason for _, reason in report.skipped)
    for reason in ("duplicate id 'x'", "duplicate id 'z'", "already loaded", "not a regular file", "unsupported",
                   "does not exist", "symlink"):
        assert reason in kinds, reason
    assert any(d.pages for d in merged) and any(d.metadata for d in merged)
    assert len({loc for loc, _ in report.skipped}) > 5


def test_a_file_another_machine_does_not_see_is_marked_for_the_driver(tmp_path: Path) -> None:
    from ragkit.build.batches import load_pieces
    from ragkit.build.units import Piece

    there = write(tmp_path / "a.txt", "Текст.")
    assert load_pieces([Piece(str(tmp_path / "gone.txt"), "gone.txt", 0), Piece(str(there), "a.txt", 0)])[0] is None


def test_a_merged_stream_of_whole_files_equals_one_local_read(tmp_path: Path) -> None:
    from messy_tree import messy_tree

    from ragkit.ingest.loaders import MergedStream, load_file, planned_files

    paths = messy_tree(tmp_path)
    local_report = LoadReport()
    local = list(iter_documents(paths, local_report))
    report = LoadReport()
    planned = planned_files(paths, report)
    stream = MergedStream(report)
    merged = [doc for path, doc_id, before in planned for doc in stream.take(before, load_file(path, doc_id))]
    stream.finish()
    assert merged == local and report == local_report


# --------------------------------------------------------------------------- JSONL line ranges


def test_jsonl_line_ranges_read_as_the_whole_file(tmp_path: Path) -> None:
    from ragkit.ingest.loaders import load_file

    lines = ['{"_id": "a", "text": "A."}', "", "{bad", '{"text": "без id"}', "   ", '{"_id": "a", "text": "again"}']
    data = ("\ufeff" + "\r\n".join(lines)).encode("utf-8")  # a BOM, CRLF, no final newline
    path = write(tmp_path / "r.jsonl", data)
    whole = load_file(path, "r.jsonl")
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    for cuts in ([0, starts[2]], [0, starts[3], starts[4]], starts):
        parts = [load_file(path, "r.jsonl", (lo, hi, 1 + starts.index(lo)))
                 for lo, hi in zip(cuts, [*cuts[1:], None])]
        assert [d for p in parts for d in p.documents] == whole.documents
        assert [s for p in parts for s in p.skips] == whole.skips
    assert [loc for loc, _ in whole.documents] == [f"{path}:1", f"{path}:4", f"{path}:6"]
    assert whole.documents[1][1].id == "r:4" and whole.skips == [(f"{path}:3", whole.skips[0][1])]
    blank = load_file(path, "r.jsonl", (starts[4], starts[5], 5))  # a range of a blank line is not an empty file
    assert (blank.documents, blank.skips) == ([], [])
    assert load_file(write(tmp_path / "e.jsonl", b"\n"), "e.jsonl").skips == [(str(tmp_path / "e.jsonl"), "empty file")]


def test_jsonl_range_of_an_over_long_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ragkit.ingest.jsonl as jsonl_module
    from ragkit.ingest.loaders import load_file

    monkeypatch.setattr(jsonl_module, "MAX_TEXT_BYTES", 50)
    short, long = '{"text": "ok"}\n', '{"text": "' + "x" * 200 + '"}\n'
    path = write(tmp_path / "l.jsonl", short + long + short)
    whole = load_file(path, "l.jsonl")
    assert whole.skips == [(f"{path}:2", "line longer than 0.0 MiB; not read")]
    a, b = len(short), len(short) + len(long)
    parts = [load_file(path, "l.jsonl", span) for span in ((0, a, 1), (a, b, 2), (b, None, 3))]
    assert [d for p in parts for d in p.documents] == whole.documents
    assert parts[1].skips == whole.skips and parts[0].skips == parts[2].skips == []


def test_a_range_is_only_for_plain_jsonl(tmp_path: Path) -> None:
    from ragkit.ingest.jsonl import iter_jsonl
    from ragkit.ingest.loaders import load_file

    gz = write_jsonl(tmp_path / "c.jsonl.gz", [{"text": "x"}], gz=True)
    txt = write(tmp_path / "t.txt", "Текст.")
    plain = write_jsonl(tmp_path / "p.jsonl", [{"text": "x"}])
    for path in (gz, txt):
        with pytest.raises(ValueError, match="byte range"):
            load_file(path, path.name, (0, None, 1))
    with pytest.raises(ValueError, match="gzip"):
        iter_jsonl(gz, LoadReport(), "c", start=0, end=5)
    with pytest.raises(ValueError, match="bad byte range"):
        load_file(plain, "p.jsonl", (5, 2, 1))
    assert [d.text for _, d in load_file(plain, "p.jsonl", (0, None, 1)).documents] == ["x"]
