"""How long runs of each flow and band took here before: the launcher tells a person what a
band costs before they pick it."""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import Any

from runs.models import RunStatus
from runs.permissions import visible_runs

# Runs that got to the end (a cancelled or failed run says little about how long one takes).
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FINISHED_WITH_FAILURES)
# The newest runs are the ones that say how this server runs today; enough for a median.
SAMPLE = 1000


def median_durations(user: Any) -> dict[tuple[str, str], tuple[float, int]]:
    """(flow, band) -> (median active seconds, how many runs), over the runs this person may
    see: their own (everyone's for a superuser), so nobody learns of another's runs."""
    runs = (
        visible_runs(user)
        .filter(status__in=FINISHED, started_at__isnull=False, finished_at__isnull=False)
        .only("flow", "band", "started_at", "finished_at", "idle_spans")
        .order_by("-finished_at")[:SAMPLE]
    )
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        active = run.active_seconds()  # the run's own rule: idle gaps before retries left out
        if active is not None:
            seconds[(run.flow, run.band)].append(active)
    return {key: (median(values), len(values)) for key, values in seconds.items()}
