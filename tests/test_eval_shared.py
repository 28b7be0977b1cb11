"""Acceptance on shared evaluation data: real model, real subprocess of `ragkit eval`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import shared_data

RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")


def test_xquad_en_dense_reaches_published_quality(tmp_path):
    """all-MiniLM-L6-v2 publishes nDCG@10 0.944 on XQuAD-en; chunking, prompts and scoring must not lose it."""
    data = shared_data("xquad/en")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([RAGKIT, "eval", str(data), "--index", str(tmp_path / "idx"), "--json"],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["queries"] == 1190
    assert res["ndcg@10"] >= 0.92, res
    assert res["recall@100"] >= res["recall@10"] >= res["ndcg@10"] * 0.9
