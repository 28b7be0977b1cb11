"""Crash test of the real ``ragkit`` command: SIGKILL writers at seeded moments, check the index.

    .venv/bin/python benchmarks/crash_bench.py --kills 50 --seed 0     # ~14 minutes on 2 shared cores
    .venv/bin/python benchmarks/crash_bench.py --hostile-mb 100        # peak memory with a 100 MB text file

Corpus: a few dozen English paragraphs of the shared xquad/en set, one ``.txt`` file each
(built-in text where the set is absent), cut into small passages (``--max-tokens 48``) so that
embedding and writing take a real share of each process's life. The real default model and CLI:

- S0, the *old* state: ``ragkit index OLD`` (docs 0-39), built once, never killed.
- Writers, in turn: ``ragkit index NEW --index DIR`` from S0 (NEW = docs 20-69), ``ragkit add ADD
  --index DIR`` from S0 (ADD = docs 70-79 and a rewritten doc005.txt), ``ragkit index NEW`` from S1
  (S1 = S0 after that add), ``ragkit add`` from S0 again, and so on.
- Calibration: each writer runs once un-killed on a fresh copy of its start state. That run gives
  the *new* state's search results and the writer's life D, with a timeline of what appeared in
  DIR when (polled every 10 ms: cache written, first new-generation file, manifest replaced, old
  generation removed, exit).
- Each kill: DIR is reset to a fresh copy of the start state (so the old and new states are
  known exactly, and the embedding cache holds what it held in calibration, so the timing
  matches), the writer starts and gets SIGKILL after a seeded delay in [0, D]: with probability
  ``--focus`` (0.5) drawn from the write window (0.25 s before the first write to 0.25 s after
  the old generation is removed), else from all of D (model loading takes most of a process's
  life and interpreter exit another second; uniform kills alone rarely hit a write).
  Then ``ragkit info --verify`` must exit 0 and ``ragkit search --queries Q --json --mode
  lexical`` must give exactly the old state's results or the new state's (every query of one
  state; a mix fails). Then, unless ``--no-recover``, the same writer runs again un-killed on
  the crashed folder and must reach the new state; files it leaves that the manifest does not
  name (debris of the killed writer) are recorded with their sizes.

Where a kill landed is read from the folder afterwards: the process had already exited; before
any write; embedding (cache written); exporting the ONNX query encoder (its temporary folder
exists); writing the new generation (new files, old manifest); after the commit (new manifest,
old generation still there, or already removed).

Writes ``benchmarks/results/crash.json`` (``--hostile-mb``: ``crash_hostile.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, environment  # noqa: E402

RAGKIT = str(Path(sys.executable).parent / "ragkit")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
       "TOKENIZERS_PARALLELISM": "false"}
_STANDARD = ("manifest.json", ".lock", "embeddings.sqlite")
_DATA_PREFIXES = ("vectors-", "store-", "lexical-", "doclexical-", "query-encoder-")


# --------------------------------------------------------------------------- processes


def run(args: list[str], timeout: float = 600) -> dict:
    """Run ``ragkit ARGS`` to the end: exit code, output, seconds, peak RSS (MiB) of that process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([RAGKIT, *args], stdout=out, stderr=err, env=ENV)
        status, usage = _wait(proc, timeout)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return {"rc": status, "stdout": out.read().decode(), "stderr": err.read().decode(), "seconds": seconds,
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def _wait(proc: subprocess.Popen, timeout: float, poll=None):  # noqa: ANN001, ANN202
    """Reap ``proc`` with wait4 (its own rusage); ``poll(elapsed)`` is called while it runs."""
    start = time.perf_counter()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        elapsed = time.perf_counter() - start
        if elapsed > timeout:
            proc.kill()
        if poll is not None:
            poll(elapsed)
        time.sleep(0.01)


def search(index: Path, queries: Path) -> list[list[str]]:
    res = run(["search", "--queries", str(queries), "--index", str(index), "--json", "--mode", "lexical", "-k", "10"])
    if res["rc"] != 0:
        raise RuntimeError(f"search failed: {res['stderr'].strip()}")
    return [[r["doc_id"] for r in json.loads(line)["results"]] for line in res["stdout"].splitlines()]


def verify(index: Path) -> dict:
    res = run(["info", "--verify", "--index", str(index)])
    return {"ok": res["rc"] == 0, "message": res["stderr"].strip()[-300:]}


# --------------------------------------------------------------------------- folder state


def snapshot(root: Path) -> dict:
    """What the folder holds now: names, manifest identity, cache state."""
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    manifest = root / "manifest.json"
    cache = root / "embeddings.sqlite"
    try:
        mstat = manifest.stat()
        mkey = (mstat.st_ino, mstat.st_mtime_ns)
    except OSError:
        mkey = None
    try:
        cstat = cache.stat()
        ckey = (cstat.st_size, cstat.st_mtime_ns)
    except OSError:
        ckey = None
    return {"names": names, "manifest": mkey, "cache": ckey}


def committed_names(root: Path) -> set[str]:
    manifest = json.loads((root / "manifest.json").read_text())
    return {Path(name).parts[0] for name in manifest["files"]}


def generation(root: Path) -> int | None:
    try:
        return int(json.loads((root / "manifest.json").read_text())["generation"])
    except (OSError, ValueError, KeyError):
        return None


def debris(root: Path) -> dict[str, int]:
    """Entries the committed manifest does not name, with their sizes in bytes."""
    keep = committed_names(root) | set(_STANDARD)
    out = {}
    for p in sorted(root.iterdir()):
        if p.name in keep:
            continue
        out[p.name] = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return out


def where(before: dict, after: dict, exited: bool) -> str:
    """Where in the writer's life a kill landed, read from the folder."""
    if exited:
        return "exited before the kill"
    old_data = {n for n in before["names"] if n.startswith(_DATA_PREFIXES[:4])}
    new = set(after["names"]) - set(before["names"])
    if after["manifest"] != before["manifest"]:
        return "after commit, old generation not yet removed" if old_data & set(after["names"]) else "after commit and cleanup"
    if any(n.startswith(".query-encoder-") for n in new):
        return "exporting the ONNX query encoder (uncommitted)"
    if any(n.startswith(_DATA_PREFIXES[:4]) for n in new):
        return "writing the new generation (uncommitted)"
    if after["cache"] != before["cache"] or "embeddings.sqlite-journal" in new:
        return "embedding (cache written), before data files"
    return "before any write (start-up, model load, loading, chunking, embedding)"


# --------------------------------------------------------------------------- corpus


FALLBACK = [
    "Technology parks in Moscow give resident companies tax breaks, laboratories and offices.",
    "A rocket engine burns propellant to produce thrust and lift a vehicle into orbit.",
    "Bread is baked from flour, water, salt and yeast; the dough rises before baking.",
    "Glaciers form where snow accumulates faster than it melts and compacts into ice.",
]


def paragraphs(n: int) -> tuple[list[tuple[str, str]], str]:
    corpus = DATA / "xquad" / "en" / "corpus.jsonl"
    if corpus.is_file():
        rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(r["title"], r["text"]) for r in rows[:n]], str(corpus)
    rng = random.Random(0)
    return [(f"Topic {i}", " ".join(rng.choice(FALLBACK) for _ in range(6))) for i in range(n)], "built-in text"


def write_corpora(work: Path) -> dict:
    docs, source = paragraphs(90)
    folders = {"old": range(0, 40), "new": range(20, 70), "add": range(70, 80)}
    for name, ids in folders.items():
        (work / name).mkdir()
        for i in ids:
            title, text = docs[i]
            (work / name / f"doc{i:03d}.txt").write_text(f"{title}\n{text}\n", encoding="utf-8")
    title, text = docs[85]
    (work / "add" / "doc005.txt").write_text(f"{title} (revised)\n{text}\n", encoding="utf-8")  # an upsert
    queries = [docs[i][1].split(".")[0][:60] for i in (0, 5, 12, 25, 45, 65, 72, 85)]
    (work / "queries.txt").write_text("\n".join(q.replace("\n", " ") for q in queries) + "\n", encoding="utf-8")
    return {"source": source, "old": 40, "new": 50, "add": 11, "queries": queries}


# --------------------------------------------------------------------------- the crash run


def calibrate(cmd: list[str], start: Path, target: Path) -> dict:
    """Run ``cmd`` un-killed on a copy of ``start``; return its life and timeline."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(start, target)
    first = snapshot(target)
    events: dict[str, float] = {}
    old_data = {n for n in first["names"] if n.startswith(_DATA_PREFIXES[:4])}

    def poll(elapsed: float) -> None:
        now = snapshot(target)
        new = set(now["names"]) - set(first["names"])
        if now["cache"] != first["cache"]:
            events.setdefault("cache_written", elapsed)
        if any(n.startswith(".query-encoder-") for n in new):
            events.setdefault("onnx_export", elapsed)
        if any(n.startswith(_DATA_PREFIXES[:4]) for n in new):
            events.setdefault("first_new_file", elapsed)
        if now["manifest"] != first["manifest"]:
            events.setdefault("commit", elapsed)
        if old_data and not old_data & set(now["names"]):
            events.setdefault("old_generation_removed", elapsed)

    with tempfile.TemporaryFile() as stdout:
        t0 = time.perf_counter()
        proc = subprocess.Popen([RAGKIT, *cmd, "--index", str(target), "--json"], stdout=stdout,
                                stderr=subprocess.DEVNULL, env=ENV)
        rc, usage = _wait(proc, 600, poll)
        duration = time.perf_counter() - t0
        stdout.seek(0)
        out = stdout.read().decode()
    if rc != 0:
        raise RuntimeError(f"calibration of {cmd} failed (exit {rc})")
    events["exit"] = duration
    writes = [events[k] for k in ("cache_written", "onnx_export", "first_new_file", "commit") if k in events]
    done = events.get("old_generation_removed", events.get("commit", duration))
    return {"duration_s": round(duration, 3), "timeline_s": {k: round(v, 3) for k, v in sorted(events.items(), key=lambda kv: kv[1])},
            "write_window_s": [round(max(0.0, min(writes) - 0.25), 3) if writes else 0.0, round(min(duration, done + 0.25), 3)],
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "result": json.loads(out)}


def crash_run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ragkit-crash-"))
    started = time.perf_counter()
    try:
        corpus = write_corpora(work)
        queries = work / "queries.txt"
        m = ["--max-tokens", str(args.max_tokens)]
        s0 = work / "S0"
        built = run(["index", str(work / "old"), "--index", str(s0), "--json", *m])
        if built["rc"] != 0:
            raise RuntimeError(built["stderr"])
        writers = {
            "index from S0": (["index", str(work / "new"), *m], s0),
            "add from S0": (["add", str(work / "add")], s0),
        }
        calib = {"add from S0": calibrate(writers["add from S0"][0], s0, work / "S1")}
        s1 = work / "S1"  # S0 after the add: the start of the third writer
        writers["index from S1"] = (["index", str(work / "new"), *m], s1)
        calib["index from S0"] = calibrate(writers["index from S0"][0], s0, work / "N0")
        calib["index from S1"] = calibrate(writers["index from S1"][0], s1, work / "N1")
        expected = {"S0": search(s0, queries), "S1": search(s1, queries), "N0": search(work / "N0", queries),
                    "N1": search(work / "N1", queries)}
        states = {"index from S0": ("S0", "N0"), "add from S0": ("S0", "S1"), "index from S1": ("S1", "N1")}
        for name, (old, new) in states.items():
            if expected[old] == expected[new]:
                raise RuntimeError(f"{name}: the old and new states give the same results; the check would be vacuous")
        manifests = {name: json.loads((work / d / "manifest.json").read_text()) for name, d in
                     (("S0", "S0"), ("S1", "S1"), ("N0", "N0"), ("N1", "N1"))}
        order = ["index from S0", "add from S0", "index from S1", "add from S0"]
        rng = random.Random(args.seed)
        trials = []
        for k in range(args.kills):
            name = order[k % len(order)]
            cmd, start = writers[name]
            old, new = states[name]
            c = calib[name]
            focused = rng.random() < args.focus
            low, high = c["write_window_s"] if focused else (0.0, c["duration_s"])
            delay = rng.uniform(low, high)
            target = work / "crash"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(start, target)
            before = snapshot(target)
            t0 = time.perf_counter()  # as in calibrate(): the life starts just before the fork
            proc = subprocess.Popen([RAGKIT, *cmd, "--index", str(target), "--json"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=ENV)
            time.sleep(max(0.0, delay - (time.perf_counter() - t0)))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            exited = pid != 0
            if exited:
                proc.returncode = os.waitstatus_to_exitcode(status)
            else:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            after = snapshot(target)
            trial = {"kill": k, "writer": name, "delay_s": round(delay, 3), "focused": focused,
                     "landed": where(before, after, exited), "generation_after_kill": generation(target)}
            trial["verify"] = verify(target)
            try:
                got = search(target, queries)
                trial["state"] = "old" if got == expected[old] else "new" if got == expected[new] else "NEITHER"
            except RuntimeError as exc:
                trial["state"] = f"search failed: {exc}"
            passed = trial["verify"]["ok"] and trial["state"] in ("old", "new")
            if not args.no_recover and trial["verify"]["ok"]:
                again = run([*cmd, "--index", str(target), "--json"])
                ok = again["rc"] == 0 and verify(target)["ok"] and search(target, queries) == expected[new]
                trial["recovery"] = {"ok": ok, "seconds": round(again["seconds"], 2), "debris": debris(target)}
                passed = passed and ok
            trial["passed"] = passed
            trials.append(trial)
            print(f"kill {k + 1:>2}/{args.kills} {name:<14} at {delay:6.2f}s  {trial['landed']:<62} "
                  f"verify={'ok' if trial['verify']['ok'] else 'FAIL'} state={trial['state']}"
                  + (f" recovery={'ok' if trial['recovery']['ok'] else 'FAIL'}" if "recovery" in trial else ""),
                  flush=True)
        landed: dict[str, int] = {}
        for t in trials:
            landed[t["landed"]] = landed.get(t["landed"], 0) + 1
        leaks: dict[str, int] = {}
        for t in trials:
            for entry, size in (t.get("recovery") or {}).get("debris", {}).items():
                kind = entry.split(".tmp-")[0] + ".tmp-*" if ".tmp-" in entry else entry
                leaks[kind] = leaks.get(kind, 0) + size
        return {
            "benchmark": "crash",
            "command": " ".join([Path(sys.executable).name, "benchmarks/crash_bench.py", *sys.argv[1:]]),
            "kills": len(trials),
            "passes": sum(t["passed"] for t in trials),
            "figure": f"{sum(t['passed'] for t in trials)}/{len(trials)}",
            "seed": args.seed,
            "settings": {"max_tokens": args.max_tokens, "focus": args.focus, "recover": not args.no_recover,
                         "reset": "a fresh copy of the writer's start state before every kill"},
            "corpus": corpus,
            "states": {name: {"generation": man["generation"], "documents": man["counts"]["documents"],
                              "passages": man["counts"]["passages"], "query_encoder": man.get("query_encoder")}
                       for name, man in manifests.items()},
            "calibration": {name: {k: v for k, v in c.items() if k != "result"} | {"embedded": c["result"]["embedded"]}
                            for name, c in calib.items()},
            "landed": dict(sorted(landed.items(), key=lambda kv: -kv[1])),
            "states_after_kill": {s: sum(t["state"] == s for t in trials) for s in ("old", "new")},
            "debris_after_recovery_bytes": leaks,
            "wall_s": round(time.perf_counter() - started, 1),
            "environment": environment(),
            "trials": trials,
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


# --------------------------------------------------------------------------- large file


def hostile_run(args: argparse.Namespace) -> dict:
    """Peak memory and time of `ragkit index` on a folder with a large text file, against the same without it."""
    work = Path(tempfile.mkdtemp(prefix="ragkit-big-"))
    try:
        docs, source = paragraphs(20)
        small = work / "small"
        small.mkdir()
        for i, (title, text) in enumerate(docs):
            (small / f"doc{i:03d}.txt").write_text(f"{title}\n{text}\n", encoding="utf-8")
        big = work / "big"
        shutil.copytree(small, big)
        block = ("A long and repetitive line of text about nothing in particular. " * 32 + "\n").encode()
        with open(big / "huge.txt", "wb") as fh:
            for _ in range(args.hostile_mb * 1_000_000 // len(block) + 1):
                fh.write(block)
        size = (big / "huge.txt").stat().st_size
        out = {}
        for name in ("small", "big"):
            res = run(["index", str(work / name), "--index", str(work / f"index-{name}"), "--json"])
            if res["rc"] != 0:
                raise RuntimeError(res["stderr"])
            data = json.loads(res["stdout"])
            out[name] = {"seconds": round(res["seconds"], 2), "peak_rss_mib": res["peak_rss_mib"],
                         "documents": data["documents"], "skipped": data["skipped"]}
        child = ("import resource, sys\nfrom ragkit.ingest.loaders import load_documents\n"
                 "d, r = load_documents([sys.argv[1]])\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        loader = {}
        for name in ("small", "big"):
            p = subprocess.run([sys.executable, "-c", child, str(work / name)], capture_output=True, text=True, check=True)
            loader[name] = round(int(p.stdout) / 1024, 1)
        return {
            "benchmark": "crash_hostile", "file_mb": round(size / 1e6, 1), "corpus": source,
            "ragkit_index": out, "loader_only_peak_rss_mib": loader,
            "note": "ragkit index's peak is the model and the ONNX query-encoder export; the large file is skipped by "
                    "its size before it is read (loaders._MAX_TEXT_BYTES)",
            "environment": environment(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=48, help="passage size of the indexes (small: more passages)")
    parser.add_argument("--focus", type=float, default=0.5, help="share of kills drawn from the write window")
    parser.add_argument("--no-recover", action="store_true", help="skip the un-killed rerun after each kill")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--hostile-mb", type=int, default=0, help="instead: peak memory with a text file this large")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.hostile_mb:
        result, default = hostile_run(args), RESULTS / "crash_hostile.json"
    else:
        result, default = crash_run(args), RESULTS / "crash.json"
        print(f"{result['figure']} kills passed ({result['wall_s']} s); landed: {result['landed']}")
    out = args.out or default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
