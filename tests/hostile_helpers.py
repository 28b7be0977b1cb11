"""Shared by the hostile-index suites: a real navec-ru index, the CLI in-process and as a real
subprocess (exit code, stderr, peak RSS), manifest edits and the one-line-error check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from click.testing import CliRunner  # typer.testing rebuilds the click command on every call

RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
MODEL = "navec-ru"  # the real static Russian model: fast, no torch
TOPICS = ["метро", "трамвай", "библиотека", "парк", "мост", "музей", "театр", "вокзал", "рынок", "стадион"]


def write_corpus(folder: Path, n: int, start: int = 0) -> Path:
    """``n`` Russian articles of ~1 KB, one .txt file each (so stores and vector files pass 64 KiB)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        topic = TOPICS[i % len(TOPICS)]
        body = " ".join(f"Статья {i} рассказывает, как {topic} номер {j} изменил жизнь района." for j in range(14))
        (folder / f"doc{i:04d}.txt").write_text(f"{topic.capitalize()} {i}\n{body}\n", encoding="utf-8")
    return folder


def build(root: Path, corpus: Path) -> None:
    from ragkit import build_index

    build_index([corpus], root, model=MODEL)


def manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(root: Path, data: Any, text: str | None = None) -> None:
    (root / "manifest.json").write_text(text if text is not None else json.dumps(data), encoding="utf-8")


def refresh_checksums(root: Path) -> None:
    """Record the files' current checksums in the manifest: damage a careful attacker hides."""
    from ragkit.format.checksums import fingerprint

    m = manifest(root)
    m["files"] = {rel: fingerprint(root / rel) for rel in m["files"]}
    write_manifest(root, m)


def data_file(root: Path, prefix: str) -> Path:
    return root / next(rel.split("/")[0] for rel in manifest(root)["files"] if rel.startswith(prefix))


_runner = CliRunner()
_command: list[Any] = []


def cli(args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    """The CLI in-process; an exception that escapes it is returned as a traceback marker."""
    if not _command:  # typer builds the click command on every invoke: build it once
        import typer

        from ragkit.cli.app import app

        _command.append(typer.main.get_command(app))
    result = _runner.invoke(_command[0], [str(a) for a in args], input=stdin)
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        err += f"\nTraceback (escaped): {type(result.exception).__name__}: {result.exception}"
    return result.exit_code, result.stdout, err


def run(args: list[str], stdin: bytes | None = None, timeout: float = 120, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """The real ``ragkit`` command: exit code (negative: killed by that signal), output, and the
    peak RSS in MiB of that process (reaped with wait4). ``prefix``: a wrapper such as strace."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp:
        inp.write(stdin or b"")
        inp.seek(0)
        proc = subprocess.Popen([*prefix, RAGKIT, *map(str, args)], stdin=inp, stdout=out, stderr=err, env=ENV)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"rc": proc.returncode, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace"), "peak_mib": usage.ru_maxrss / 1024}


def assert_one_line(rc: int, err: str, what: object = "") -> None:
    """Exit code 1, exactly one line on stderr, ``ragkit: error:``, no traceback, no internal error."""
    assert rc == 1, (what, rc, err[-2000:])
    assert err.startswith("ragkit: error:") and err.count("\n") == 1, (what, err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, (what, err[-2000:])


def assert_clean(rc: int, err: str, what: object = "") -> None:
    """Exit 0, or the one-line error of :func:`assert_one_line`."""
    if rc != 0:
        assert_one_line(rc, err, what)
    assert "Traceback" not in err, (what, err[-2000:])
