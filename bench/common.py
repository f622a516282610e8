"""Shared bench plumbing: a throwaway test database, percentiles, a scripted model."""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")


@contextmanager
def bench_database() -> Iterator[None]:
    """A fresh test database for the bench, dropped afterwards: the real one is never touched."""
    import django
    from django.test.utils import setup_databases, teardown_databases

    django.setup()
    from django.db import connection

    # A name of its own: tests and other benches may be using test_<name> at the same time.
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"test_bench_{os.getpid()}"
    config = setup_databases(verbosity=0, interactive=False)
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()
        teardown_databases(config, verbosity=0)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe(name: str, values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    scaled = [v * scale for v in values]
    return (
        f"{name}: n={len(scaled)} p50={percentile(scaled, 50):.1f}{unit} "
        f"p95={percentile(scaled, 95):.1f}{unit} p99={percentile(scaled, 99):.1f}{unit} "
        f"mean={statistics.fmean(scaled):.1f}{unit}"
    )


def make_target(base: Path) -> Path:
    """A small project for the agents to read (the same one the tests use)."""
    from devtools.testing import write_project

    return write_project(base)
