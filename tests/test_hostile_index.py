"""A hostile index folder (issue #18): links, paths out of the folder, lying size fields, damage
deep and wide, manifest fields of every wrong type, odd arguments.

Every case ends in exit code 1 and one ``ragkit: error:`` line on stderr (or exit 0 where the
damage does not touch what the command reads), never a traceback, never an exit code above
128; nothing outside the index folder is written or read; memory stays bounded by the files'
sizes. The index is real (navec-ru, FAISS, SQLite, BM25, built by ``ragkit.build_index``).
Most cases run the CLI in-process (CliRunner: an exception escaping the CLI fails the case);
exit codes, peak memory and the system calls are checked on real ``ragkit`` subprocesses.
Counts of cases are printed (``-s``) and reported in the README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_helpers import (  # noqa: E402
    MODEL, assert_clean, assert_one_line, build, cli, data_file, manifest, refresh_checksums, run, write_corpus,
    write_manifest,
)

OUTSIDE_BYTES = 12_347  # an outside file of a size no message may leak


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-index")
    corpus = write_corpus(work / "corpus", 80)
    extra = write_corpus(work / "extra", 3, start=500)
    root = work / "index"
    build(root, corpus)
    assert (data_file(root, "vectors-")).stat().st_size > 1 << 16
    assert (data_file(root, "store-")).stat().st_size > 1 << 16
    return root, extra


@pytest.fixture
def idx(pristine, tmp_path):
    root, extra = pristine
    copy = tmp_path / "idx"
    shutil.copytree(root, copy)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"x" * OUTSIDE_BYTES)
    return copy, extra, outside


def _commands(root: Path, extra: Path) -> dict[str, list[str]]:
    return {
        "search-lexical": ["search", "метро", "--index", root, "--mode", "lexical"],
        "search-hybrid": ["search", "трамвай", "--index", root, "--json"],
        "verify": ["info", "--verify", "--index", root],
        "add": ["add", extra, "--index", root, "--quiet"],
    }


# --------------------------------------------------------------------------- links


def _link_out(root: Path, rel: str, outside_dir: Path) -> Path:
    """Move ``root/rel`` out of the folder and leave a link to it: following it would 'work'."""
    target = outside_dir / Path(rel).name
    shutil.move(str(root / rel), target)
    os.symlink(target, root / rel)
    return target


LINKED = ["vectors", "store", "lexical-dir", "lexical-file", "doclexical-dir", "manifest"]


@pytest.mark.parametrize("kind", LINKED)
def test_linked_data_files_are_refused(idx, tmp_path, kind):
    root, extra, _ = idx
    m = manifest(root)
    rel = {"vectors": m["vectors"]["file"], "store": m["store"]["file"], "lexical-dir": m["lexical"]["dir"],
           "lexical-file": f"{m['lexical']['dir']}/bm25_data.npy", "doclexical-dir": m["lexical"]["documents_dir"],
           "manifest": "manifest.json"}[kind]
    (tmp_path / "away").mkdir()
    target = _link_out(root, rel, tmp_path / "away")
    before = _tree_state(target)
    for name, args in _commands(root, extra).items():
        rc, _, err = cli(args)
        assert_one_line(rc, err, (kind, name))
        assert "symbolic link" in err or "no ragkit index" in err or "not a readable" in err, (kind, name, err)
    assert _tree_state(target) == before, "a file outside the folder was changed"


def _tree_state(path: Path) -> dict[str, bytes]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): p.read_bytes() for p in files}


def test_linked_cache_is_never_written_through(idx, tmp_path):
    """``embeddings.sqlite`` linked to another SQLite file, or to a file not yet there: ``add`` refuses."""
    root, extra, _ = idx
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE mine (x)")
    before = other.read_bytes()
    (root / "embeddings.sqlite").unlink()
    os.symlink(other, root / "embeddings.sqlite")
    rc, _, err = cli(["add", extra, "--index", root])
    assert_one_line(rc, err, "cache linked to a database")
    assert "embeddings.sqlite is a symbolic link" in err
    assert other.read_bytes() == before
    (root / "embeddings.sqlite").unlink()
    os.symlink(tmp_path / "created-by-ragkit.sqlite", root / "embeddings.sqlite")
    rc, _, err = cli(["add", extra, "--index", root])
    assert_one_line(rc, err, "dangling cache link")
    assert not (tmp_path / "created-by-ragkit.sqlite").exists()
    for name in ("search-lexical", "verify"):  # readers never open the cache
        rc, _, err = cli(_commands(root, extra)[name])
        assert rc == 0, err


@pytest.mark.parametrize("dangling", [False, True])
def test_linked_lock_is_refused(idx, tmp_path, dangling):
    root, extra, outside = idx
    target = tmp_path / "not-there" if dangling else outside
    (root / ".lock").unlink()
    os.symlink(target, root / ".lock")
    for args in (["add", extra, "--index", root], ["remove", "doc0001.txt", "--index", root]):
        rc, _, err = cli(args)
        assert_one_line(rc, err, args[0])
        assert ".lock is a symbolic link" in err
    assert not (tmp_path / "not-there").exists() and outside.read_bytes() == b"x" * OUTSIDE_BYTES


# --------------------------------------------------------------------------- paths out of the folder


def _bad_names(outside: Path) -> list[str]:
    return [str(outside), "/etc/passwd", "../outside.txt", "lexical-000001/../../outside.txt", "./x", ".", "..",
            "sub\\..\\..\\x", "C:/x", "", "a\x00b", "x" * 300]


def _set_name(m: dict, field: str, value: str) -> None:
    if field == "files key":
        m["files"][value] = next(iter(m["files"].values()))
    elif field == "query_encoder.dir":
        m["query_encoder"] = {"dir": value}
    else:
        section, key = field.split(".")
        m[section][key] = value


NAME_FIELDS = ["vectors.file", "store.file", "lexical.dir", "lexical.documents_dir", "query_encoder.dir", "files key"]


@pytest.mark.parametrize("field", NAME_FIELDS)
def test_paths_out_of_the_folder_are_refused(idx, field):
    """Absolute, ``..`` and odd names in every manifest field that names a file: refused, not opened."""
    root, extra, outside = idx
    pristine = manifest(root)
    for bad in _bad_names(outside):
        m = json.loads(json.dumps(pristine))
        _set_name(m, field, bad)
        write_manifest(root, m)
        for name in ("search-lexical", "verify", "add"):
            rc, _, err = cli(_commands(root, extra)[name])
            assert_one_line(rc, err, (field, bad, name))
            assert str(OUTSIDE_BYTES) not in err, "the size of an outside file leaked"
    write_manifest(root, pristine)


# --------------------------------------------------------------------------- size fields that lie


def _patch(path: Path, offset: int, value: int, fmt: str = "<q") -> None:
    import struct

    data = bytearray(path.read_bytes())
    at = offset if offset >= 0 else len(data) + offset
    data[at:at + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))


BOMBS = {
    "faiss ntotal 750M": lambda r: _patch(data_file(r, "vectors-"), 8, 750_000_000),
    "faiss ntotal 1e11": lambda r: _patch(data_file(r, "vectors-"), 8, 10 ** 11),
    "faiss inner ntotal 750M": lambda r: _patch(data_file(r, "vectors-"), 45, 750_000_000),
    "faiss vector array 750M": lambda r: _patch(data_file(r, "vectors-"), 74, 750_000_000, "<Q"),
    "faiss id array 750M": lambda r: _patch(data_file(r, "vectors-"), -8 - 8 * manifest(r)["counts"]["passages"],
                                                    750_000_000, "<Q"),
    "store passage id 1e12": lambda r: _sql(data_file(r, "store-"), "UPDATE passages SET id = 1000000000000 WHERE id = 5"),
    "store document id 1e12": lambda r: _sql(data_file(r, "store-"),
                                             "UPDATE documents SET id = 1000000000000 WHERE id = 3; "
                                             "UPDATE passages SET doc = 1000000000000 WHERE doc = 3"),
}


def _sql(path: Path, script: str) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(script)


def test_lying_size_fields_keep_memory_bounded(pristine, tmp_path):
    """Count fields rewritten (checksums updated to match): one line, and peak RSS at most 64 MiB
    over an intact index's search (FAISS reads such files by allocating what the field says)."""
    root, extra = pristine
    baseline = run(["search", "трамвай", "--index", root, "--json", "--source", "*"])
    assert baseline["rc"] == 0, baseline["stderr"]
    peaks = {}
    for kind, damage in BOMBS.items():
        copy = tmp_path / kind.replace(" ", "-")
        shutil.copytree(root, copy)
        damage(copy)
        refresh_checksums(copy)
        for args in (["search", "трамвай", "--index", copy, "--json", "--source", "*"], ["info", "--verify", "--index", copy]):
            out = run(args)
            if kind.startswith("store") and args[0] == "info":  # verify reads no document-row array
                assert_clean(out["rc"], out["stderr"], (kind, args[0]))
            else:
                assert_one_line(out["rc"], out["stderr"], (kind, args[0]))
            peaks[f"{kind} / {args[0]}"] = out["peak_mib"]
    zero = run(["search", "--queries", "/dev/zero", "--index", root])
    assert_one_line(zero["rc"], zero["stderr"], "/dev/zero")
    peaks["--queries /dev/zero"] = zero["peak_mib"]
    print(f"\nbaseline search peak {baseline['peak_mib']:.0f} MiB; hostile peaks {json.dumps(peaks)}")
    worst = max(peaks, key=peaks.get)
    assert peaks[worst] <= baseline["peak_mib"] + 64, (worst, peaks[worst], baseline["peak_mib"])


def _inner_count_at(path: Path, factory: str) -> int:
    """Where an approximate index keeps a count FAISS allocates by: HNSW's neighbour-offset array
    length (ntotal + 1), or an IVF index's first inverted-list length."""
    import struct

    data = path.read_bytes()
    if factory.startswith("HNSW"):
        n = manifest(path.parent)["counts"]["passages"]
        at = data.find(struct.pack("<Q", n + 1))
    else:
        at = data.find(b"ilar") + 4 + 16 + 4 + 8  # nlist, code size, "full", the sizes' count
    assert at > 0, factory
    return at


@pytest.mark.parametrize("index_type", ["hnsw", "ivf-sq8"])
def test_lying_inner_counts_of_approximate_indexes_keep_memory_bounded(tmp_path, index_type):
    """An HNSW graph's or an IVF list's own count says 3*10^8 (checksums updated to match): FAISS
    reads with its per-array limit lowered to the file's size (format/faiss_header.py), so the
    search is one line and its peak RSS stays within 64 MiB of an intact search. Before, a 64 KB
    IVF file made FAISS allocate 6.9 GB, a 687 KB HNSW file 2.3 GB."""
    from ragkit import build_index
    from ragkit.build.options import BuildOptions

    root = tmp_path / "index"
    build_index([write_corpus(tmp_path / "corpus", 40)], root, model=MODEL, options=BuildOptions(index_type=index_type))
    factory = manifest(root)["vectors"]["factory"]
    assert factory.startswith("HNSW" if index_type == "hnsw" else "IVF"), factory
    args = ["search", "трамвай", "--mode", "dense", "--json"]
    baseline = run([*args, "--index", root])
    assert baseline["rc"] == 0, baseline["stderr"]
    vectors = data_file(root, "vectors-")
    _patch(vectors, _inner_count_at(vectors, factory), 300_000_000, "<Q")
    refresh_checksums(root)
    for what in (args, ["info", "--verify"]):
        out = run([*what, "--index", root])
        assert_one_line(out["rc"], out["stderr"], (index_type, what[0]))
        assert "larger than" in out["stderr"], out["stderr"]
        assert out["peak_mib"] <= baseline["peak_mib"] + 64, (what[0], out["peak_mib"], baseline["peak_mib"])


# --------------------------------------------------------------------------- damage deep and wide


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(16):
        data[(offset + i) % len(data)] ^= 0x5A
    path.write_bytes(bytes(data))


DAMAGES = {
    "head": lambda p: _flip(p, 40),
    "deep": lambda p: _flip(p, max(len(p.read_bytes()) // 2, 70_000) if p.stat().st_size > 140_000 else p.stat().st_size // 2),
    "tail": lambda p: _flip(p, p.stat().st_size - 24),
    "truncated": lambda p: os.truncate(p, p.stat().st_size // 2),
}


def _files(root: Path) -> dict[str, Path]:
    m = manifest(root)
    lex, doc = root / m["lexical"]["dir"], root / m["lexical"]["documents_dir"]
    return {"faiss": root / m["vectors"]["file"], "sqlite": root / m["store"]["file"], "bm25 data": lex / "bm25_data.npy",
            "bm25 indptr": lex / "bm25_indptr.npy", "bm25 ids": lex / "bm25_ids.npy", "bm25 vocab": lex / "bm25_vocab.json",
            "bm25 manifest": lex / "bm25.json", "doc bm25 indices": doc / "bm25_indices.npy"}


def test_damage_deep_and_wide(pristine, tmp_path):
    """Each file type x each damage, with the checksums left (caught at open or by --verify) or
    rewritten to match (a careful attacker: the parsers' own checks must hold): never a traceback."""
    root, extra = pristine
    cases = 0
    for hide in (False, True):
        for kind in _files(root):
            for how, damage in DAMAGES.items():
                copy = tmp_path / "d"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(root, copy)
                damage(_files(copy)[kind])
                if hide:
                    refresh_checksums(copy)
                commands = _commands(copy, extra)
                for name in ("search-lexical", "search-hybrid", "verify"):
                    rc, _, err = cli(commands[name])
                    assert_clean(rc, err, (kind, how, hide, name))
                    cases += 1
                    if name == "verify" and not hide:
                        assert_one_line(rc, err, (kind, how, "verify must fail"))
    print(f"\ndamage cases: {cases} command runs over {2 * len(_files(root)) * len(DAMAGES)} damaged indexes")


def test_update_does_not_launder_deep_damage(idx):
    """Bytes flipped past 64 KiB in the vectors: --verify fails, ``add`` refuses, --verify still fails."""
    root, extra, _ = idx
    _flip(data_file(root, "vectors-"), 100_000)
    generation = manifest(root)["generation"]
    rc, _, err = cli(["info", "--verify", "--index", root])
    assert_one_line(rc, err, "verify before")
    for args in (["add", extra, "--index", root], ["remove", "doc0001.txt", "--index", root]):
        rc, _, err = cli(args)
        assert_one_line(rc, err, args[0])
        assert "does not match its checksum" in err
    assert manifest(root)["generation"] == generation
    rc, _, err = cli(["info", "--verify", "--index", root])
    assert_one_line(rc, err, "verify after")


def test_a_damaged_cache_is_rebuilt(idx):
    """The README calls embeddings.sqlite safe to delete; damaged mid-file it is rebuilt, not an error."""
    root, extra, _ = idx
    cache = root / "embeddings.sqlite"
    data = bytearray(cache.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = os.urandom(4096)
    cache.write_bytes(bytes(data))
    rc, out, err = cli(["add", extra, "--index", root, "--json"])
    assert rc == 0, err
    assert json.loads(out)["added"] == 3
    rc, _, err = cli(["info", "--verify", "--index", root])
    assert rc == 0, err


# --------------------------------------------------------------------------- odd arguments, as real processes


def test_odd_arguments_as_real_processes(pristine, tmp_path):
    root, extra = pristine
    regular = tmp_path / "a-file"
    regular.write_text("not a folder")
    cases = {
        "invalid UTF-8 on --queries -": (["search", "--queries", "-", "--index", root], b"fine\n\xff\xfe bad\n"),
        "100 KB --source glob": (["search", "x", "--source", "[a-" * 33_000, "--index", root], None),
        "100 KB --source glob on remove": (["remove", "--source", "*" * 100_000, "--index", root], None),
        "--index is a regular file (search)": (["search", "x", "--index", regular], None),
        "--index is a regular file (index)": (["index", extra, "--index", regular], None),
        "--index is a regular file (add)": (["add", extra, "--index", regular], None),
        "add to a folder that does not exist": (["add", extra, "--index", tmp_path / "nonexistent"], None),
        "remove from a folder without an index": (["remove", "d1", "--index", tmp_path], None),
    }
    for what, (args, stdin) in cases.items():
        out = run(args, stdin=stdin)
        assert_one_line(out["rc"], out["stderr"], what)
    assert not (tmp_path / "nonexistent").exists(), "add created the folder before saying there is no index"
    assert not (tmp_path / ".lock").exists()
    assert regular.read_text() == "not a folder"


# --------------------------------------------------------------------------- system calls


def _strace_ok() -> str | None:
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    probe = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat", "-o", os.devnull, "true"], capture_output=True)
    return None if probe.returncode == 0 else f"ptrace is not permitted here: {probe.stderr.decode()[:200]}"


_WRITE_CALL = re.compile(r'^\d+\s+(open|openat|openat2|creat|rename|renameat2?|unlink|unlinkat|mkdir|mkdirat|'
                         r'symlink|symlinkat|link|linkat|truncate|chmod|fchmodat)\((?:AT_FDCWD|\d+), "([^"]*)"(.*)$')


def _written_paths(log: Path) -> list[str]:
    """Paths a process created, wrote, renamed, removed or changed, from an strace log."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = _WRITE_CALL.match(line)
        if not m:
            continue
        call, path, rest = m.groups()
        if call.startswith("open") and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", rest):
            continue
        if "= -1" in rest and call.startswith("open"):
            continue  # refused
        out.append(os.path.abspath(path))
    return out


def _private_temp(path: str) -> bool:
    """The file Python's tempfile creates once to probe that $TMPDIR is writable (a reader writes
    nothing there: format/pinning.py reads through its descriptors)."""
    import tempfile

    parent, name = os.path.split(path)
    return parent == tempfile.gettempdir() and re.fullmatch(r"[a-z0-9_]{8}", name) is not None


def test_nothing_outside_the_folder_is_written(pristine, tmp_path):
    """strace of real ``ragkit`` processes on hostile folders (and one good update): every path opened
    for writing, created, renamed or removed is inside the index folder (or /dev/null, a terminal,
    a reader's private link folder in $TMPDIR)."""
    reason = _strace_ok()
    if reason:
        pytest.skip(reason)
    root, extra = pristine
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"x" * OUTSIDE_BYTES)

    def linked_cache(r: Path) -> None:
        (r / "embeddings.sqlite").unlink()
        os.symlink(tmp_path / "cache-target.sqlite", r / "embeddings.sqlite")

    def linked_lock(r: Path) -> None:
        (r / ".lock").unlink()
        os.symlink(outside, r / ".lock")

    def absolute_key(r: Path) -> None:
        m = manifest(r)
        m["files"]["/etc/passwd"] = {"size": 0, "head_sha256": "0" * 64, "sha256": "0" * 64}
        write_manifest(r, m)

    cases = [
        ("add, linked cache", linked_cache, ["add", extra], 1),
        ("add, linked lock", linked_lock, ["add", extra], 1),
        ("search, absolute files key", absolute_key, ["search", "метро"], 1),
        ("search, a good index", lambda r: None, ["search", "метро", "--mode", "hybrid"], 0),
        ("remove, a good index", lambda r: None, ["remove", "doc0001.txt", "doc0002.txt"], 0),
    ]
    for what, damage, args, code in cases:
        copy = tmp_path / "s"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(root, copy)
        damage(copy)
        log = tmp_path / "strace.log"
        out = run([*args, "--index", copy], prefix=("strace", "-f", "-qq", "-o", str(log), "-e",
                                                   "trace=%file"), timeout=300)
        if code:
            assert_one_line(out["rc"], out["stderr"], what)
        else:
            assert out["rc"] == 0, (what, out["stderr"])
        allowed = (str(copy) + os.sep, "/dev/null", "/dev/tty", "/dev/pts/")
        written = _written_paths(log)
        stray = sorted({p for p in written if not (p.startswith(allowed) or p == str(copy) or _private_temp(p))})
        assert not stray, (what, stray[:10])
        if args[0] == "remove":  # the log is read right: a good update wrote its new generation inside
            assert any(p.startswith(str(copy / "vectors-")) for p in written), written[:20]
        if what == "search, absolute files key":
            assert '"/etc/passwd"' not in log.read_text(errors="replace"), "a file outside the folder was opened"
