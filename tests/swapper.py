"""The race tests' swapper: a plain module (no Django) so a spawned process can import it."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

SWAPPED = ("src", "src/pkg", ".git/objects", ".git/objects/pack")
MAX_SWAPS = 5_000_000  # the swapper's bound, should the readers never finish
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def exchange(libc: Any, one: bytes, other: bytes) -> None:
    """Swap two names in one step (renameat2 RENAME_EXCHANGE): each always exists."""
    if libc.renameat2(AT_FDCWD, one, AT_FDCWD, other, RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), f"renameat2 {one!r} {other!r}")


def swap_until_stopped(target: str, outside: str, swaps: Any, stop: Any) -> None:
    """The swapper, in its own process so it runs truly beside the readers: each folder in
    turn is exchanged with a link to its outside twin for a moment, then exchanged back."""
    libc = ctypes.CDLL(None, use_errno=True)
    pairs = []
    for rel in SWAPPED:
        place = Path(target) / rel
        staged = place.with_name(place.name + ".link")
        staged.symlink_to(Path(outside) / rel)
        pairs.append((os.fsencode(place), os.fsencode(staged)))
    done = 0
    try:
        while not stop.is_set() and done < MAX_SWAPS:
            place, staged = pairs[(done // 64) % len(pairs)]  # a burst on each folder in turn
            for _ in range(64):
                exchange(libc, place, staged)  # now a link to the outside twin
                exchange(libc, place, staged)  # the folder again
            done += 64
            swaps.value = done
    finally:
        for _, staged in pairs:
            os.unlink(staged)
