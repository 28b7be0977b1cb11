"""The framework adapters stay out of ``import ragkit``; without its framework an adapter says
which extra to install. Each check runs in a fresh interpreter, so other tests' imports do not count."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("langchain", "langchain_core", "langsmith", "llama_index")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_ragkit_and_integrations_import_no_framework():
    done = _python(
        "import sys, ragkit, ragkit.integrations\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r})))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("module", "blocked", "extra"), [
    ("ragkit.integrations.langchain", "langchain_core", "langchain"),
    ("ragkit.integrations.llama_index", "llama_index", "llama-index"),
])
def test_missing_framework_names_the_extra(module, blocked, extra):
    # sys.modules[name] = None makes ``import name`` fail as if the package were not installed
    done = _python(
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "import ragkit\n"
        "try:\n"
        f"    import {module}\n"
        "except ImportError as exc:\n"
        "    print(isinstance(exc, ragkit.RagkitError), exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True ") and f"pip install 'ragkit[{extra}]'" in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1
