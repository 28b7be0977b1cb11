"""A full disk (issue #18, item 4): real ``ragkit`` writers on a 24 MB tmpfs filled to several levels.

Each write (``add``, a fresh ``index``, ``index --force``) that does not fit ends in exit 1 and
one ``no space left`` line; what it wrote is removed at once (the folder lists exactly what it
listed before, the embedding cache aside), the old index still verifies, and the same command
succeeds once space is freed. Needs root to mount the tmpfs; skipped with the reason otherwise.
Also here: killed int8 encoder exports' ``.tmp-`` folders are removed from the model cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_helpers import assert_one_line, cli, run, write_corpus  # noqa: E402

LEVELS = [0, 64 << 10, 600 << 10]  # bytes left free


@pytest.fixture
def small_fs(tmp_path):
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("needs root to mount a 24 MB tmpfs")
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(mount: Path, leave: int) -> Path:
    """Leave ``leave`` bytes free on the filesystem with one filler file."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    size = max(_free(mount) - leave, 0)
    with open(filler, "wb") as fh:
        block = b"\0" * (1 << 20)
        while size > 0:
            try:
                fh.write(block[: min(size, len(block))])
                fh.flush()
            except OSError:
                break
            size -= min(size, len(block))
    return filler


def _listing(root: Path) -> set[str]:
    return {n for n in os.listdir(root) if not n.startswith("embeddings.sqlite")} if root.exists() else set()


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(small_fs, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 240)
    extra = write_corpus(tmp_path / "extra", 160, start=1000)
    index = small_fs / "index"
    built = run(["index", corpus, "--index", index, "--quiet"], timeout=300)
    assert built["rc"] == 0, built["stderr"]
    writers = {
        "add": ["add", extra, "--index", index, "--quiet"],
        "fresh index": ["index", extra, "--index", small_fs / "fresh", "--quiet"],
        "--force": ["index", corpus, "--index", index, "--force", "--quiet"],
    }
    failures = 0
    for leave in LEVELS:
        for what, args in writers.items():
            target = Path(args[args.index("--index") + 1])
            before = _listing(target)
            _fill(small_fs, leave)
            out = run(args, timeout=300)
            if out["rc"] == 0:  # it fitted: fine, but then undo it for the next level
                assert leave > 0, (what, "wrote into a full disk?")
                continue
            failures += 1
            assert_one_line(out["rc"], out["stderr"], (what, leave))
            assert "no space left" in out["stderr"], out["stderr"]
            (small_fs / "filler").unlink()
            assert _listing(target) == before, (what, leave, sorted(_listing(target) ^ before))
            rc, _, err = cli(["info", "--verify", "--index", index])
            assert rc == 0, err
        (small_fs / "filler").unlink(missing_ok=True)
    assert failures >= len(LEVELS) * 2, failures  # the low levels must fail for every writer
    for what, args in writers.items():  # space freed: each goes through
        out = run(args, timeout=300)
        assert out["rc"] == 0, (what, out["stderr"])
    verified = run(["info", "--verify", "--index", index])
    assert verified["rc"] == 0, verified["stderr"]
    print(f"\ndisk full: {failures} failed writes at {len(LEVELS)} levels, all one line, nothing left behind")


def test_killed_int8_exports_leave_no_temporary_folders(tmp_path, monkeypatch):
    """The export lock's holder removes ``.tmp-``/``.old-`` folders that killed exporters left."""
    pytest.importorskip("onnxruntime")
    from ragkit.encoders import int8 as embedder

    monkeypatch.setenv("RAGKIT_CACHE", str(tmp_path))
    folder = embedder.int8_encoder_dir("some-model", "/nowhere")
    folder.parent.mkdir(parents=True)
    debris = [folder.with_name(f".{folder.name}.tmp-{s}") for s in ("abc123", "def456")]
    debris.append(folder.with_name(f".{folder.name}.old-999"))
    for d in debris:
        (d / "raw").mkdir(parents=True)
        (d / "raw" / "model.onnx").write_bytes(b"\0" * 4096)
    other = folder.with_name(".passage-encoder-int8-other.tmp-x")  # another model's: not ours to remove
    other.mkdir()

    class Stop(Exception):
        pass

    def no_model():  # the export itself is not under test: stop before it starts
        raise Stop

    with pytest.raises(Stop):
        embedder.int8_encoder("some-model", "/nowhere", no_model)
    assert not any(d.exists() for d in debris)
    assert other.exists()
    shutil.rmtree(other)
