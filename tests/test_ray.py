"""The build on Ray equals the local build: passages, ids, offsets, BM25 bit for bit, vectors, top-10.

One local Ray instance (2 CPUs) serves the whole session; the model is navec-ru (real, static,
fast); corpora are a few hundred synthetic Russian documents made from the seed article.
The two-node test runs in a subprocess on its own ``ray.cluster_utils.Cluster``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SEEDS

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'ragkit[ray]')")

from ragkit import BuildOptions, Index, RayExecutor, build_index, update_index  # noqa: E402
from ragkit.format.manifest import read_manifest  # noqa: E402

MODEL = "navec-ru"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def joined_env() -> dict[str, str]:
    """This process's environment after ``ray.init``: it carries the cluster's auth mode (RAY_AUTH_MODE)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def write_corpus(folder: Path, n: int, seed: int = 0, start: int = 0) -> Path:
    """``n`` synthetic Russian documents (one JSONL file): random sentences over the seed article's words."""
    words = re.findall(r"\w+", next(SEEDS.glob("*.txt")).read_text(encoding="utf-8"))
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{seed}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize()
                         for _ in range(rng.randint(2, 40))]
            fh.write(json.dumps({"id": f"doc-{i}", "title": f"Новость {i}", "text": ". ".join(sentences) + "."},
                                ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance of 2 CPUs for the whole test session."""
    from ragkit.build.ray_executor import start_ray

    if not ray.is_initialized():
        start_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """240 documents in 6 JSONL shards: the workers read them too."""
    folder = tmp_path_factory.mktemp("corpus")
    for shard in range(6):
        write_corpus(folder, 40, seed=shard, start=40 * shard)
    return folder


def executor(**kw) -> RayExecutor:
    return RayExecutor(workers=2, documents_per_unit=kw.pop("documents_per_unit", 40),
                       texts_per_unit=kw.pop("texts_per_unit", 200), **kw)


def store_rows(root: Path) -> tuple[list, list]:
    manifest = read_manifest(root)
    with sqlite3.connect(root / manifest["store"]["file"]) as conn:
        return (conn.execute("SELECT * FROM documents ORDER BY id").fetchall(),
                conn.execute("SELECT * FROM passages ORDER BY id").fetchall())


def assert_same_index(local: Path, remote: Path, top10: bool = True) -> None:
    """Same passages, ids and offsets; BM25 files bit-identical; vectors within float tolerance; same top-10."""
    a, b = read_manifest(local), read_manifest(remote)
    assert a["counts"] == b["counts"] and a["chunker"] == b["chunker"] and a["model"] == b["model"]
    assert a["vectors"]["factory"] == b["vectors"]["factory"]
    assert store_rows(local) == store_rows(remote)
    for key in ("dir", "documents_dir"):
        files = sorted(p.name for p in (local / a["lexical"][key]).iterdir())
        assert files == sorted(p.name for p in (remote / b["lexical"][key]).iterdir())
        for name in files:
            assert (local / a["lexical"][key] / name).read_bytes() == (remote / b["lexical"][key] / name).read_bytes(), name
    with Index.open(local) as x, Index.open(remote) as y:
        ids = x.vectors.ids()
        assert np.array_equal(ids, y.vectors.ids())
        np.testing.assert_allclose(x.vectors.reconstruct(ids), y.vectors.reconstruct(ids), atol=1e-6)
        if top10:
            texts = [p.text for p in x.store.passages([int(i) for i in ids[:: max(1, len(ids) // 100)][:100]]).values()]
            queries = [" ".join(t.split()[3:9]) for t in texts]
            assert len(queries) >= 50
            for mode in ("dense", "lexical", "hybrid"):
                got_x = [[r.doc_id for r in rs] for rs in x.search_many(queries, 10, mode=mode)]
                got_y = [[r.doc_id for r in rs] for rs in y.search_many(queries, 10, mode=mode)]
                assert got_x == got_y, mode


def units_of(corpus: Path, ex: RayExecutor) -> int:
    from ragkit.build import stream

    return len(stream.plan([corpus], ex.unit_sizes()).units)


def test_ray_builds_equal_local_builds_flat_ivf_hnsw(ray_local, corpus, tmp_path):
    """Each type built on Ray equals the local build; after the first, the driver's cache holds
    every vector and the workers are told so: a rebuild on Ray embeds nothing. Flat and IVF
    vectors are added in shards on the workers and merged."""
    for i, index_type in enumerate(["flat", "ivf-sq8", "hnsw"]):
        options = BuildOptions(index_type=index_type)
        local = build_index([corpus], tmp_path / "local", model=MODEL, options=options)
        with executor(shard_vectors=100) as ex:
            remote = build_index([corpus], tmp_path / "ray", model=MODEL, options=options, executor=ex)
            # 6 files of ~100 KB in units that shrink toward the end: some files are cut in line ranges
            assert sum(ex.nodes["build"].values()) == units_of(corpus, ex) > 6
            # flat and IVF: filled in shards on the workers and merged; HNSW cannot merge: the driver builds it
            assert ("vectors" in ex.nodes) == (index_type != "hnsw")
            assert remote.embedded == (remote.passages if i == 0 else 0)
        assert (remote.documents, remote.passages) == (local.documents, local.passages)
        assert read_manifest(tmp_path / "ray")["vectors"]["factory"].startswith(
            {"flat": "Flat", "ivf-sq8": "IVF", "hnsw": "HNSW"}[index_type])
        assert_same_index(tmp_path / "local", tmp_path / "ray")


def test_ray_update_equals_local_update(ray_local, corpus, tmp_path):
    extra = tmp_path / "extra"
    write_corpus(extra, 60, seed=1, start=200)  # ids 200..259: 40 replace documents, 20 are new
    for name in ("local", "ray"):
        build_index([corpus], tmp_path / name, model=MODEL)
    update_index(tmp_path / "local", add=[extra], remove=["doc-3", "doc-7"])
    with executor() as ex:
        result = update_index(tmp_path / "ray", add=[extra], remove=["doc-3", "doc-7"], executor=ex)
        assert sum(ex.nodes["chunk"].values()) == 2  # only the 60 added documents were chunked
    assert result.added == 60 and result.removed == 42
    assert_same_index(tmp_path / "local", tmp_path / "ray")


def test_ray_embeds_a_minority_language_with_its_model_as_the_local_build_does(ray_local, tmp_path):
    """A mixed archive (tests/mixed_corpus.py): the English passages' second vector index is
    embedded by all-MiniLM-L6-v2 on the workers and equals the local one."""
    from mixed_corpus import write

    corpus = write(tmp_path / "mixed")
    build_index([corpus], tmp_path / "local")
    with executor(unit_bytes=4096, smallest_unit=1024) as ex:
        build_index([corpus], tmp_path / "ray", executor=ex)
        assert sum(ex.nodes["build"].values()) > 2 and sum(ex.nodes["embed"].values()) == 1  # then the English ones
    assert_same_index(tmp_path / "local", tmp_path / "ray", top10=False)  # 36 passages: too few for its queries
    a, b = read_manifest(tmp_path / "local"), read_manifest(tmp_path / "ray")
    (x,), (y,) = a["language_vectors"]["indexes"], b["language_vectors"]["indexes"]
    assert {k: v for k, v in x.items() if k != "tuning"} == {k: v for k, v in y.items() if k != "tuning"}
    with Index.open(tmp_path / "local") as i, Index.open(tmp_path / "ray") as j:
        one, two = i.dense_side("English"), j.dense_side("English")
        ids = one.vectors.ids()
        assert np.array_equal(ids, two.vectors.ids())
        np.testing.assert_allclose(one.vectors.reconstruct(ids), two.vectors.reconstruct(ids), atol=1e-6)
        queries = ["feline companions", "a hurricane approaches", "новая линия метро", "урожай пшеницы"]
        for mode in ("dense", "hybrid"):
            assert ([[r.doc_id for r in rs] for rs in i.search_many(queries, 10, mode=mode)]
                    == [[r.doc_id for r in rs] for rs in j.search_many(queries, 10, mode=mode)])


def test_ray_reads_the_files_on_workers_as_one_local_read(ray_local, tmp_path):
    """Files go to the workers in units and come back merged in file order: the documents, ids,
    metadata, pages and skip report of a local read, whatever order the units finish in."""
    from messy_tree import messy_tree

    from ragkit.ingest.loaders import LoadReport, iter_documents
    from ragkit.progress import NoProgress

    paths = messy_tree(tmp_path)
    local_report = LoadReport()
    local = list(iter_documents(paths, local_report))
    report = LoadReport()
    with RayExecutor(workers=2, files_per_unit=2) as ex:
        docs = ex.load([str(p) for p in paths], report, NoProgress())
        assert sum(ex.nodes["load"].values()) >= 4  # several units, not one
    assert docs == local
    assert (report.files, report.documents, report.skipped) == (local_report.files, local_report.documents,
                                                                local_report.skipped)


def test_ray_int8_vectors_equal_the_local_build(ray_local, tmp_path):
    """all-MiniLM-L6-v2's int8 activations are quantised with one scale a batch, so the int8
    encoder embeds one text a batch: a passage's vector is its text's alone, and units of any
    size on the workers give the local build's vectors (batches of 32 differed by up to 0.025)."""
    from mixed_corpus import ENGLISH

    rng = random.Random(3)
    sentences = [s.strip() + "." for _, _, text in ENGLISH for s in text.split(". ") if s.strip()]
    folder = tmp_path / "en"
    folder.mkdir()
    with open(folder / "en.jsonl", "w", encoding="utf-8") as fh:
        for i in range(120):
            text = " ".join(rng.choice(sentences) for _ in range(rng.randint(1, 4)))
            fh.write(json.dumps({"id": f"en-{i}", "title": f"Story {i}", "text": text}) + "\n")
    build_index([folder], tmp_path / "local")
    with executor(unit_bytes=8192, smallest_unit=1024) as ex:
        build_index([folder], tmp_path / "ray", executor=ex)
        assert sum(ex.nodes["build"].values()) > 4
    assert read_manifest(tmp_path / "ray")["model"]["passage_backend"]["name"] == "onnx-int8"
    assert_same_index(tmp_path / "local", tmp_path / "ray")


def _actor_pids(name: str) -> list[int]:
    """Processes of this machine whose title names a Ray Data actor of class ``name``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            if f"MapBatches({name})" in cmdline:
                pids.append(int(entry.name))
    return pids


class KillOnce:
    """A progress sink that SIGKILLs one build actor when the first unit's result arrives."""

    def __init__(self) -> None:
        self.stage = ""
        self.killed: list[int] = []

    def start(self, stage, total=None):
        self.stage = stage

    def advance(self, n=1):
        if self.stage == "Reading and embedding" and not self.killed:
            pids = _actor_pids("UnitActor")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed.append(pids[0])

    def finish(self):
        pass


def test_a_killed_actor_is_replaced_and_the_build_completes_the_same(ray_local, corpus, tmp_path):
    build_index([corpus], tmp_path / "local", model=MODEL)
    progress = KillOnce()
    with executor(unit_bytes=32 << 10, smallest_unit=4096) as ex:
        build_index([corpus], tmp_path / "ray", model=MODEL, executor=ex, progress=progress)
    assert progress.killed, "no build actor process was found to kill"
    assert_same_index(tmp_path / "local", tmp_path / "ray", top10=False)


def test_a_worker_error_is_one_clear_error_and_the_index_stays(ray_local, corpus, tmp_path):
    """The actors cannot load the model: the worker's ragkit error comes back as itself, one line."""
    from ragkit.errors import ModelLoadError, RagkitError

    build_index([corpus], tmp_path / "ix", model=MODEL)
    before = store_rows(tmp_path / "ix")
    with executor() as ex, pytest.raises(RagkitError) as caught:
        build_index([corpus], tmp_path / "ix", model="no-such-model-anywhere", executor=ex, force=True)
    assert isinstance(caught.value, ModelLoadError)
    assert "no-such-model-anywhere" in str(caught.value) and "\n" not in str(caught.value)
    assert store_rows(tmp_path / "ix") == before
    with Index.open(tmp_path / "ix") as ix:
        assert ix.search("Москва", 3)


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("ragkit")), *args], capture_output=True, text=True,
                          env=joined_env(), timeout=300, **kw)


def test_cli_engine_ray_is_quiet_and_a_killed_driver_leaves_the_index(ray_local, corpus, tmp_path):
    address = ray.get_runtime_context().gcs_address
    out = _cli("index", str(corpus), "-i", str(tmp_path / "ix"), "-m", MODEL, "--engine", "ray",
               "--ray-address", address, "--workers", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # no Ray noise without --verbose
    assert json.loads(out.stdout)["passages"] == read_manifest(tmp_path / "ix")["counts"]["passages"]
    before = store_rows(tmp_path / "ix")
    extra = tmp_path / "extra"
    write_corpus(extra, 400, seed=2, start=1000)
    running = set(_actor_pids("ChunkActor")) | set(_actor_pids("EmbedActor"))
    proc = subprocess.Popen([str(Path(sys.executable).with_name("ragkit")), "add", str(extra), "-i",
                             str(tmp_path / "ix"), "--engine", "ray", "--ray-address", address],
                            env=joined_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # kill it once its actors are at work
        if set(_actor_pids("ChunkActor")) - running:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the add finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert store_rows(tmp_path / "ix") == before
    with Index.open(tmp_path / "ix") as ix:
        assert ix.search("Москва", 3)
    bad = _cli("index", str(corpus), "-i", str(tmp_path / "other"), "--engine", "spark")
    assert bad.returncode == 1 and bad.stderr.startswith("ragkit: error: --engine must be local or ray")


TWO_NODES = r"""
import json, sys
import ray
from ray.cluster_utils import Cluster
from ragkit import BuildOptions, RayExecutor, build_index

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
with RayExecutor(address=cluster.address, workers=2, documents_per_unit=20, texts_per_unit=64) as ex:
    build_index([sys.argv[1]], sys.argv[2], model="navec-ru", options=BuildOptions(index_type="flat"), executor=ex)
    print(json.dumps({"nodes": nodes, "used": ex.nodes, "cpus": ex.cpus_per_worker()}))
ray.shutdown()
cluster.shutdown()
"""


def test_two_node_cluster_spreads_the_work_and_builds_the_same_index(corpus, tmp_path):
    local = tmp_path / "local"
    build_index([corpus], local, model=MODEL)
    out = subprocess.run([sys.executable, "-c", TWO_NODES, str(corpus), str(tmp_path / "ray")], capture_output=True,
                         text=True, env={**ENV, "RAY_BACKEND_LOG_LEVEL": "fatal"}, timeout=400, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report["nodes"]) == 2
    assert set(report["used"]["build"]) == set(report["nodes"]), report  # both nodes ran units
    assert_same_index(local, tmp_path / "ray")


def _makespan(bounds: list[tuple[int, int]], workers: int) -> int:
    """When the last of ``workers`` finishes units handed out in order to whichever is free first
    (as an actor pool takes blocks), a unit costing its size."""
    free = [0] * workers
    for lo, hi in bounds:
        free[free.index(min(free))] += hi - lo
    return max(free)


@pytest.mark.parametrize(("n", "largest", "multiple", "workers"),
                         [(4446, 512, 32, 2), (4446, 512, 32, 1), (100_000, 256, 32, 16), (1789, 256, 32, 2),
                          (7, 64, 1, 2), (1, 512, 32, 2), (0, 512, 32, 2)])
def test_units_shrink_so_the_workers_finish_together(n, largest, multiple, workers):
    """Embedding units cover the texts in order, start at batch multiples (the local batches) and
    shrink toward the end, so no worker runs a big last unit while the others idle: the pool
    finishes within one batch of an even split. Units of one size do not (4,446 passages in
    units of 512 on two workers: 2,398 against 2,223)."""
    from ragkit.build.ray_executor import guided_bounds

    bounds = guided_bounds(n, largest, multiple, workers)
    assert [lo for lo, _ in bounds] == ([0] + [hi for _, hi in bounds[:-1]] if n else [])
    assert (bounds[-1][1] if bounds else 0) == n
    sizes = [hi - lo for lo, hi in bounds]
    assert all(lo % multiple == 0 for lo, _ in bounds)
    assert all(0 < s <= largest for s in sizes) and sizes[:-1] == sorted(sizes[:-1], reverse=True)
    assert _makespan(bounds, workers) <= -(-n // workers) + multiple
    if (n, largest, workers) == (4446, 512, 2):
        equal = [(lo, min(n, lo + largest)) for lo in range(0, n, largest)]
        assert _makespan(equal, workers) == 2398 > -(-n // workers) + multiple
