"""Where the built server and the generated model live: the user's cache, never the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The directory holding every llama.cpp artefact (`$XDG_CACHE_HOME` or `~/.cache`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestrator" / "llama.cpp"
