"""A long-running process freezes its start-up heap (orchestrator_site/heap.py): full
garbage collections then walk what the process made since, not the 180,000 objects it keeps
for ever. Counted, not timed."""

from __future__ import annotations

import gc
import sys

from orchestrator_site.heap import freeze_startup_heap


def test_the_startup_heap_is_frozen_and_first_use_imports_are_done() -> None:
    try:
        frozen = freeze_startup_heap()
        walked = len(gc.get_objects())  # what a full collection walks now
        assert frozen == gc.get_freeze_count() > 50_000
        assert walked < frozen / 4, (walked, frozen)
        # What an agent's first step would otherwise import on the event loop.
        assert "httpcore" in sys.modules
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
