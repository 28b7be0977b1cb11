"""The ONNX query encoder against sentence-transformers (torch): cold start, latency, throughput.

    .venv/bin/python benchmarks/onnx_bench.py              # everything, ~6 minutes on 2 cores
    .venv/bin/python benchmarks/onnx_bench.py --quick      # fewer runs and passages

(a) cold process: a fresh ``python`` that loads the encoder and embeds one query, timed whole
    from outside (median of several runs; wall and CPU seconds), for the ONNX encoder (as
    loaded for queries, and variants) and for sentence-transformers;
(b) warm latency of one query per call (p50, p90);
(c) indexing throughput, passages/s for 256-token passages in batches of 32: torch vs ONNX
    fp32 vs ONNX int8 (onnxruntime dynamic quantisation of the weights, per channel and per
    tensor), also one thread each in passages per CPU-second, with cosine agreement to torch and
    top-10 agreement of queries searched against the torch-built passage index.

Passages and queries come from the shared SciFact set when present (else built-in text).
Writes benchmarks/results/onnx.json. The machine may be shared: the load average before and
after is recorded; compare figures from one run only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _env import DATA, RESULTS, ROOT, environment  # noqa: E402

from ragkit.encoders.onnx_export import export_onnx  # noqa: E402
from ragkit.encoders.onnx_runtime import CONFIG_NAME, MODEL_NAME, TOKENIZER_NAME, OnnxEncoder, read_config
from ragkit.vectors.exact import l2_normalize  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache" / "onnx"
QUERY = "what are the technology parks of Moscow?"
FALLBACK_TEXT = (
    "Technology parks in Moscow give resident companies tax breaks, laboratories and offices. "
    "A rocket engine burns propellant to produce thrust. Bread is baked from flour and yeast. "
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
       "TOKENIZERS_PARALLELISM": "false"}

ONNX_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from ragkit.encoders.onnx_runtime import OnnxEncoder, read_config
t1 = time.perf_counter()
folder, kwargs = sys.argv[1], json.loads(sys.argv[2])
if kwargs.pop("private_open", False):
    from pathlib import Path
    enc = OnnxEncoder._open(Path(folder), read_config(folder), threads=kwargs.get("threads"), throughput=False)
else:
    enc = OnnxEncoder.load(folder, **kwargs)
t2 = time.perf_counter()
enc.encode([sys.argv[3]])
t3 = time.perf_counter()
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "encode_s": t3 - t2, "heavy_modules": heavy}))
"""
ST_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
t1 = time.perf_counter()
model = SentenceTransformer(sys.argv[1], device="cpu")
t2 = time.perf_counter()
model.encode([sys.argv[2]], show_progress_bar=False)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "encode_s": t3 - t2}))
"""


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed_child(args: list[str]) -> dict:
    """Run a child python; its wall time from outside and CPU time (user + sys)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, check=True, cwd=ROOT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = out.stdout.strip().splitlines()
    inner = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return {"wall_s": wall, "cpu_s": cpu, **inner}


def summarise(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
    out = {f"median_{k}": round(statistics.median(r[k] for r in runs), 4) for k in keys}
    out["min_wall_s"] = round(min(r["wall_s"] for r in runs), 4)
    out["runs"] = len(runs)
    if "heavy_modules" in runs[0]:
        out["heavy_modules"] = sorted({m for r in runs for m in r["heavy_modules"]})
    return out


def cold_processes(cases: dict[str, list[str]], rounds: dict[str, int]) -> dict:
    """Round-robin over the cases so that background load hits them alike."""
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for i in range(max(rounds.values())):
        for name, args in cases.items():
            if i < rounds[name]:
                runs[name].append(timed_child(args))
    return {name: summarise(r) for name, r in runs.items()}


def percentiles(samples: list[float]) -> dict:
    a = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2), "n": len(a)}


def warm_latency(fn, queries: list[str]) -> dict:
    fn(queries[0])
    samples = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        samples.append(time.perf_counter() - t)
    return percentiles(samples)


def scifact(limit_queries: int) -> tuple[list[str], list[str]]:
    folder = DATA / "scifact"
    corpus = folder / "corpus.jsonl"
    if not corpus.exists():
        return [], []
    opener = gzip.open if corpus.suffix == ".gz" else open
    with opener(corpus, "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    with open(folder / "queries.jsonl", encoding="utf-8") as fh:
        queries = [json.loads(line)["text"] for line in fh][:limit_queries]
    return [f"{d.get('title', '')}\n{d.get('text', '')}".strip() for d in docs], queries


def long_passages(texts: list[str], tokenizer_json: Path, n: int, tokens: int = 256) -> list[str]:
    """n texts that fill the 256-token window (truncated to it), else built-in text repeated."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.no_padding()
    out = [t for t, e in zip(texts, tok.encode_batch(texts)) if len(e.ids) >= tokens][:n]
    i = 0
    while len(out) < n:
        out.append(f"Passage {i}. " + FALLBACK_TEXT * 8)
        i += 1
    return out


def quantize_int8(fp32: Path, target: Path, per_channel: bool) -> Path:
    """An int8 copy of the encoder folder (dynamic quantisation of weights; single file)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    import onnx

    quantize_dynamic(str(fp32 / MODEL_NAME), str(target / MODEL_NAME), weight_type=QuantType.QInt8,
                     per_channel=per_channel, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    shutil.copy(fp32 / TOKENIZER_NAME, target / TOKENIZER_NAME)
    config = read_config(fp32)
    config["onnx"]["precision"] = (f"int8 (onnxruntime quantize_dynamic, QInt8 weights, "
                                   f"{'per channel' if per_channel else 'per tensor'})")
    config["files"] = {}
    (target / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


def agreement(vectors: np.ndarray, reference: np.ndarray) -> dict:
    cos = (l2_normalize(vectors) * l2_normalize(reference)).sum(axis=1)
    return {"min": round(float(cos.min()), 6), "p1": round(float(np.percentile(cos, 1)), 6),
            "median": round(float(np.median(cos)), 6)}


def top10_agreement(queries: np.ndarray, reference: np.ndarray, passages: np.ndarray) -> dict:
    k = 10
    got = np.argsort(-(l2_normalize(queries) @ passages.T), axis=1)[:, :k]
    ref = np.argsort(-(l2_normalize(reference) @ passages.T), axis=1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(got, ref)]
    return {"mean_overlap@10": round(float(np.mean(overlap)), 4),
            "identical_top10": round(float(np.mean([list(a) == list(b) for a, b in zip(got, ref)])), 4),
            "queries": len(got)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and passages")
    parser.add_argument("--passages", type=int, default=None)
    args = parser.parse_args()
    cold_runs, st_runs = (3, 1) if args.quick else (9, 3)
    n_passages = args.passages or (64 if args.quick else 300)
    result: dict = {"environment": environment(("ragkit", "numpy", "torch", "transformers", "sentence-transformers",
                                                "onnx", "onnxruntime", "tokenizers", "faiss-cpu")),
                    "load_average_before": load_average()}
    result["environment"]["torch_threads_default"] = None

    # -- export -----------------------------------------------------------------------------
    from ragkit.encoders.embedder import Embedder

    embedder = Embedder()
    t = time.perf_counter()
    model = embedder.model
    result["st_model_load_s"] = round(time.perf_counter() - t, 3)
    import torch

    result["environment"]["torch_threads_default"] = torch.get_num_threads()
    t = time.perf_counter()
    fp32 = export_onnx(model, CACHE / "minilm-fp32", model_name=embedder.name)
    result["export"] = {"seconds": round(time.perf_counter() - t, 2), "config": read_config(fp32)}
    t = time.perf_counter()
    int8 = quantize_int8(fp32, CACHE / "minilm-int8", per_channel=True)
    result["export"]["int8_quantize_s"] = round(time.perf_counter() - t, 2)
    result["export"]["int8_model_bytes"] = (int8 / MODEL_NAME).stat().st_size
    int8_tensor = quantize_int8(fp32, CACHE / "minilm-int8-per-tensor", per_channel=False)
    print(f"exported in {result['export']['seconds']} s; fp32 {(fp32 / 'model.onnx.data').stat().st_size / 1e6:.1f} MB, "
          f"int8 {result['export']['int8_model_bytes'] / 1e6:.1f} MB", flush=True)

    # -- (a) cold processes ------------------------------------------------------------------
    st_path = embedder._load_path
    cases = {
        "python -c pass": ["-c", "pass"],
        "import numpy": ["-c", "import numpy"],
        "import ragkit": ["-c", "import ragkit"],
        "onnx fp32 (query session: 1 thread, no prepacking)": ["-c", ONNX_CHILD, str(fp32), "{}", QUERY],
        "onnx fp32, 2 threads": ["-c", ONNX_CHILD, str(fp32), '{"threads": 2}', QUERY],
        "onnx fp32, throughput session (prepacking, all cores)": ["-c", ONNX_CHILD, str(fp32), '{"throughput": true}', QUERY],
        "onnx int8 per-channel (query session)": ["-c", ONNX_CHILD, str(int8), '{"private_open": true}', QUERY],
        "sentence-transformers (torch)": ["-c", ST_CHILD, st_path, QUERY],
    }
    rounds = {name: (st_runs if "sentence" in name else cold_runs) for name in cases}
    print("cold processes ...", flush=True)
    result["cold_process"] = cold_processes(cases, rounds)
    for name, r in result["cold_process"].items():
        print(f"  {name:58s} wall {r['median_wall_s']:.3f} s (min {r['min_wall_s']:.3f})  cpu {r['median_cpu_s']:.3f} s", flush=True)

    # -- (b) warm latency --------------------------------------------------------------------
    corpus, sci_queries = scifact(300)
    latency_queries = (sci_queries or [QUERY + f" {i}" for i in range(50)])[: 30 if args.quick else 100]
    enc = OnnxEncoder.load(fp32)
    enc2 = OnnxEncoder.load(fp32, threads=2)
    enc8 = OnnxEncoder._open(int8, read_config(int8), threads=None, throughput=False)
    print("warm latency ...", flush=True)
    result["warm_latency_one_query"] = {
        "onnx fp32 (query session, 1 thread)": warm_latency(lambda q: enc.encode([q]), latency_queries),
        "onnx fp32, 2 threads": warm_latency(lambda q: enc2.encode([q]), latency_queries),
        "onnx int8 per-channel (query session)": warm_latency(lambda q: enc8.encode([q]), latency_queries),
        "sentence-transformers (torch)": warm_latency(
            lambda q: model.encode([q], show_progress_bar=False), latency_queries),
    }
    for name, r in result["warm_latency_one_query"].items():
        print(f"  {name:40s} p50 {r['p50_ms']:.1f} ms  p90 {r['p90_ms']:.1f} ms", flush=True)

    # -- (c) throughput and agreement --------------------------------------------------------
    passages = long_passages(corpus, fp32 / TOKENIZER_NAME, n_passages)

    def st_encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)

    def onnx_engine(folder: Path, threads: int | None) -> object:
        enc_ = OnnxEncoder._open(folder, read_config(folder), threads=threads, throughput=True)
        return lambda texts: enc_.encode(texts, batch_size=32)

    engines = {
        "torch (sentence-transformers)": st_encode,
        "onnx fp32": onnx_engine(fp32, None),
        "onnx int8 per-channel": onnx_engine(int8, None),
        "onnx int8 per-tensor": onnx_engine(int8_tensor, None),
    }
    single = {  # one thread each: passages per CPU-second is robust to other load on the machine
        "torch (sentence-transformers)": st_encode,
        "onnx fp32": onnx_engine(fp32, 1),
        "onnx int8 per-channel": onnx_engine(int8, 1),
        "onnx int8 per-tensor": onnx_engine(int8_tensor, 1),
    }
    for fn in (*engines.values(), *single.values()):  # warm up: first-batch allocation and pre-packing
        fn(passages[:32])

    def measure(fn) -> tuple[float, float, np.ndarray]:
        c, t = time.process_time(), time.perf_counter()
        out = np.asarray(fn(passages), dtype=np.float32)
        return len(passages) / (time.perf_counter() - t), len(passages) / (time.process_time() - c), out

    speeds: dict[str, list[float]] = {name: [] for name in engines}
    per_cpu_s: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    print(f"throughput on {len(passages)} passages of 256 tokens ...", flush=True)
    for _ in range(1 if args.quick else 2):
        for name, fn in engines.items():
            wall_rate, _, vectors[name] = measure(fn)
            speeds[name].append(wall_rate)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, fn in single.items():
            per_cpu_s[name] = measure(fn)[1]
    finally:
        torch.set_num_threads(torch_threads)
    reference = vectors["torch (sentence-transformers)"]
    index = l2_normalize(reference)
    query_texts = sci_queries or latency_queries
    query_ref = model.encode(query_texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    result["throughput"] = {"passages": len(passages), "tokens_per_passage": 256, "batch_size": 32,
                            "threads": {"torch": torch_threads, "onnxruntime": os.cpu_count()},
                            "queries_for_agreement": len(query_texts), "engines": {}}
    for name in engines:
        entry: dict = {"passages_per_s": [round(s, 1) for s in speeds[name]],
                       "best_passages_per_s": round(max(speeds[name]), 1),
                       "one_thread_passages_per_cpu_s": round(per_cpu_s[name], 1)}
        if name != "torch (sentence-transformers)":
            query_vectors = single[name](query_texts)
            entry["passage_cosine_to_torch"] = agreement(vectors[name], reference)
            entry["query_cosine_to_torch"] = agreement(query_vectors, query_ref)
            entry["query_top10_vs_torch"] = top10_agreement(query_vectors, query_ref, index)
        result["throughput"]["engines"][name] = entry
        print(f"  {name:30s} {entry['passages_per_s']} passages/s; one thread: "
              f"{entry['one_thread_passages_per_cpu_s']} passages per CPU-second", flush=True)
        for key in ("passage_cosine_to_torch", "query_cosine_to_torch", "query_top10_vs_torch"):
            if key in entry:
                print(f"      {key}: {entry[key]}", flush=True)
    result["load_average_after"] = load_average()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("onnx-quick.json" if args.quick else "onnx.json")
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}; load average before {result['load_average_before']}, "
          f"after {result['load_average_after']}")


if __name__ == "__main__":
    main()
