"""Where the built server and the generated model live: the user's cache, never the repository."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def cache_root() -> Path:
    """The directory holding every llama.cpp artefact (`$XDG_CACHE_HOME` or `~/.cache`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestrator" / "llama.cpp"


def recipe_digest(sources: Iterable[Path]) -> str:
    """A short digest of the files a generated artefact is made from: any change to them
    names a new file, so a stale one is never reused."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:10]


def ensure_written(path: Path, write: Callable[[Path], None]) -> Path:
    """Return `path`, writing it first with `write` if it is missing: beside its final name
    and renamed, so a reader never sees half a file."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(prefix=".model-", suffix=path.suffix, dir=path.parent)
        os.close(handle)
        try:
            write(Path(staged))
            os.replace(staged, path)
        finally:
            Path(staged).unlink(missing_ok=True)
    return path
