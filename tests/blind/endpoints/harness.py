"""What the blind endpoint tests share besides fixtures: launching `launch_flow --wait` as a
process, and reading what a person sees (percentages, stored text, the run detail's agents)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.testing import ROOT

TRACEBACK = "Traceback (most recent call last)"
RUN_ID = re.compile(r"\brun ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")
# Control bytes no stored text may hold: C0 but tab, newline and carriage return; DEL.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A number followed by a percent sign (also NaN% and inf%): what a person reads as a share.
PERCENT = re.compile(
    r"(?<![\w.%])([-+\u2212]?(?:\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|nan|NaN|inf|Infinity|∞))\s?%",
)


@dataclass
class Launched:
    """A finished `launch_flow --wait`: its exit code, output and the run it made."""

    returncode: int
    stdout: str
    stderr: str
    run_id: str | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def start_launch(
    env: dict[str, str], target: Path, *, band: str, flow: str = "code-review", log: Path
) -> subprocess.Popen[bytes]:
    """`launch_flow FLOW --wait` for alice as a background process writing to `log`."""
    handle = log.open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "launch_flow",
            flow,
            "--target",
            str(target),
            "--band",
            band,
            "--fast",
            "--user",
            "alice",
            "--focus",
            "the shell call",
            "--wait",
        ],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def finish_launch(process: subprocess.Popen[bytes], log: Path, timeout: float) -> Launched:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(
            f"launch_flow did not end within {timeout:g}s:\n{log.read_text()[-4000:]}"
        ) from None
    text = log.read_text(encoding="utf-8", errors="replace")
    found = RUN_ID.search(text)
    return Launched(process.returncode, text, "", found.group(1) if found else None)


def strict_json(text: str) -> Any:
    """JSON as a browser would read it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"the answer carries {constant}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


def agents_of(detail: Any) -> list[dict[str, Any]]:
    """The agents in a run detail: the list of objects that each name a step key."""
    found: list[list[dict[str, Any]]] = []

    def walk(value: Any) -> None:
        if isinstance(value, list):
            if value and all(isinstance(each, dict) and "key" in each for each in value):
                found.append(value)
            for each in value:
                walk(each)
        elif isinstance(value, dict):
            for each in value.values():
                walk(each)

    walk(detail)
    assert found, f"no list of agents in the run detail: {json.dumps(detail)[:800]}"
    return max(found, key=len)


def bad_percentages(text: str) -> list[str]:
    """Every percentage in the text that is not a number from 0 to 100."""
    bad = []
    for match in PERCENT.finditer(text):
        raw = match.group(1).replace(",", "").replace("\u2212", "-")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 <= value <= 100):
            start = max(0, match.start() - 40)
            bad.append(text[start : match.end() + 10])
    return bad


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, each in value.items():
            yield str(key)
            yield from strings_in(each)
    elif isinstance(value, list):
        for each in value:
            yield from strings_in(each)


def numbers_in(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield path, float(value)
    elif isinstance(value, dict):
        for key, each in value.items():
            yield from numbers_in(each, f"{path}.{key}")
    elif isinstance(value, list):
        for index, each in enumerate(value):
            yield from numbers_in(each, f"{path}[{index}]")


def stored_control_bytes() -> list[str]:
    """Every text or JSON value in the database that holds a NUL or another control byte:
    `table.column: 'excerpt'`. The whole test database belongs to this test."""
    from django.db import connection

    found: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
            " AND data_type IN ('text', 'character varying', 'json', 'jsonb')"
        )
        columns = cursor.fetchall()
        for table, column, kind in columns:
            cursor.execute(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')
            for (value,) in cursor.fetchall():
                if kind in ("json", "jsonb"):
                    value = json.loads(value) if isinstance(value, str) else value
                for text in strings_in(value):
                    hit = CONTROL.search(text)
                    if hit:
                        excerpt = text[max(0, hit.start() - 30) : hit.end() + 30]
                        found.append(f"{table}.{column}: {excerpt!r}")
    return found


def wait_during(
    process: subprocess.Popen[bytes],
    log: Path,
    condition: Callable[[], bool],
    timeout: float,
    what: Callable[[], str],
) -> None:
    """Wait until `condition()` holds while `launch_flow` runs; fail at once, with its output,
    if it ends first or the time is up."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = process.poll() is not None
        if ended or time.monotonic() > deadline:
            why = f"the run ended (exit {process.returncode})" if ended else f"{timeout:g}s passed"
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise AssertionError(f"{why} before {what()}:\n{tail}")
        time.sleep(0.05)
