"""A live index: the server answers from each new generation that another process commits,
requests in flight finish on their own generation, and no request fails during a switch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'ragkit[server]'")

import httpx  # noqa: E402
from serve_process import RAGKIT, serving  # noqa: E402

import ragkit  # noqa: E402
from ragkit.server import LiveIndex  # noqa: E402

MARK = "ледокол"  # only the live documents hold this word


def _doc(i: int) -> ragkit.Document:
    return ragkit.Document(id=f"live-{i}", title=f"Ледокол номер {i}", date="2025-11-01", source="live",
                           text=f"Атомный ледокол номер {i} провёл караван по Северному морскому пути.")


def _states(ops: int) -> tuple[list[tuple[str, int]], list[frozenset[str]]]:
    """``ops`` alternating adds and removes, and the set of live documents after each (all distinct)."""
    steps, states, present, added = [], [frozenset()], [], 0
    for n in range(ops):
        if n == 0 or n % 2 == 1:  # add, add, remove, add, remove, ...: one or two live documents
            added += 1
            steps.append(("add", added))
            present.append(f"live-{added}")
        else:
            steps.append(("remove", int(present[0].split("-")[1])))
            present.pop(0)
        states.append(frozenset(present))
    assert len(set(states)) == len(states)
    return steps, states


def test_inflight_requests_keep_their_generation(news_index, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(news_index, path)
    live = LiveIndex(path, poll=60)  # no watcher: this test switches by hand
    try:
        first = live.generation
        with live.use() as held:
            for i in range(3):  # three commits: the files of the held generation are deleted by now
                ragkit.update_index(path, add=[_doc(i)])
                assert live.refresh()
            assert not (path / held.manifest["vectors"]["file"]).exists()
            assert int(held.manifest["generation"]) == first
            assert held.search(MARK, k=5, mode="lexical") == []  # still answers, from its own generation
            assert [r.doc_id for r in held.search("технопарки", k=1)] == ["tech-1"]
            with live.use() as newest:
                assert live.generation == first + 3 and newest is not held
                assert {r.doc_id for r in newest.search(MARK, k=5, mode="lexical")} == {"live-0", "live-1", "live-2"}
        assert not live.refresh()  # nothing new
    finally:
        live.close()


def test_searches_stay_correct_while_another_process_updates(news_index, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(news_index, path)
    steps, states = _states(20)
    answers: list[tuple[float, frozenset[str]]] = []
    failures: list[str] = []
    hybrid_ok = [0]
    done = threading.Event()

    with serving("--index", str(path)) as url:
        def lexical_loop() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                for _ in range(50_000):  # bounded in count and in time
                    if done.is_set():
                        break
                    try:
                        r = client.get("/search", params={"q": MARK, "k": 50, "mode": "lexical", "per_doc": 0})
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                            continue
                        answers.append((time.monotonic(), frozenset(x["doc_id"] for x in r.json()["results"])))
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        def hybrid_loop() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                for _ in range(50_000):
                    if done.is_set():
                        break
                    try:
                        r = client.post("/search", json={"queries": ["Атомный ледокол на Севморпути", "технопарки"], "k": 5})
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                        else:
                            assert r.json()[1]["results"][0]["doc_id"] in {"tech-1", "school-1"}
                            hybrid_ok[0] += 1
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=lexical_loop), threading.Thread(target=hybrid_loop)]
        for t in threads:
            t.start()
        commits: list[float] = []
        deadline = time.monotonic() + 400
        try:
            for n, (op, i) in enumerate(steps):
                if op == "add":
                    f = tmp_path / f"live-{i}.jsonl"
                    d = _doc(i)
                    f.write_text(json.dumps({"_id": d.id, "title": d.title, "text": d.text, "date": d.date},
                                            ensure_ascii=False) + "\n", encoding="utf-8")
                    cmd = [RAGKIT, "add", str(f), "--index", str(path), "--quiet"]
                else:
                    cmd = [RAGKIT, "remove", f"live-{i}", "--index", str(path), "--quiet"]
                subprocess.run(cmd, check=True, capture_output=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                commits.append(time.monotonic())
                assert time.monotonic() < deadline, f"only {n + 1} updates within the time bound"
            final = time.monotonic() + 10
            while time.monotonic() < final and not (answers and answers[-1][1] == states[-1]):
                time.sleep(0.05)
        finally:
            done.set()
            for t in threads:
                t.join(timeout=60)

    assert failures == []
    assert hybrid_ok[0] > 0
    seen = [states.index(a) if a in states else None for _, a in answers]
    assert None not in seen, "an answer matches no committed generation"
    assert seen == sorted(seen), "a later answer came from an older generation"
    assert seen[-1] == len(states) - 1
    # how long after each writer exited the server first answered from its commit (printed, not asserted: timings are benchmarks)
    lags = []
    for n, t in enumerate(commits, start=1):
        first = next((at for (at, _), s in zip(answers, seen) if s >= n), None)
        if first is not None:
            lags.append(max(0.0, first - t))
    print(f"\nlive: {len(answers)} lexical + {hybrid_ok[0]} hybrid batch answers, 0 failed; "
          f"{len(set(seen))} of {len(states)} generations seen; lag after commit max {max(lags):.2f} s, "
          f"median {sorted(lags)[len(lags) // 2]:.2f} s")


def test_a_generation_that_cannot_be_opened_leaves_the_current_one_serving(news_index, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(news_index, path)
    live = LiveIndex(path, poll=60)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        broken = {**manifest, "generation": 99, "vectors": {**manifest["vectors"], "file": "vectors-000099.faiss"}}
        (path / "manifest.json").write_text(json.dumps(broken), encoding="utf-8")  # as if its files were already gone
        assert not live.refresh()
        with live.use() as idx:
            assert [r.doc_id for r in idx.search("технопарки", k=1)] == ["tech-1"]
        (path / "manifest.json").write_text(json.dumps({**manifest, "generation": 7}), encoding="utf-8")
        assert live.refresh() and live.generation == 7  # the next check opens what is there
    finally:
        live.close()
