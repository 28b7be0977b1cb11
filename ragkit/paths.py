"""Where the default corpus (``seeds/``) and the default index (``index/``) live.

The project root is the current directory when it has a ``seeds/`` folder, else the folder
above the installed package (an editable install of the repository). ``RAGKIT_INDEX`` and
``RAGKIT_SEEDS`` override either.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    cwd = Path.cwd()
    if (cwd / "seeds").is_dir():
        return cwd
    above = Path(__file__).resolve().parent.parent
    return above if (above / "seeds").is_dir() else cwd


def default_index_dir() -> Path:
    env = os.environ.get("RAGKIT_INDEX")
    return Path(env) if env else project_root() / "index"


def default_seeds_dir() -> Path:
    env = os.environ.get("RAGKIT_SEEDS")
    return Path(env) if env else project_root() / "seeds"
