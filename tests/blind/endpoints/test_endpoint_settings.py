"""Promise A5: several endpoints per provider are configured as a list in ORCHESTRATOR_PROVIDERS
or as comma-separated URLs in ORCHESTRATOR_BASE_URL. A bad list (a non-http entry, an empty
list, the same endpoint twice) is refused at start with one line naming the setting, a
non-zero exit code and no traceback; a single URL string keeps working as before.

Each case runs the real `manage.py` (`check`, and `launch_flow`, which must refuse before it
launches anything).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import ROOT, manage_env

from .harness import RUN_ID, TRACEBACK

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ONE = "http://127.0.0.1:9/v1"
TWO = "http://127.0.0.1:10/v1"


def providers(base_url: Any) -> str:
    return json.dumps({"llama-cpp": {"base_url": base_url}})


BAD = {
    "providers-ftp-entry": ("ORCHESTRATOR_PROVIDERS", providers([ONE, "ftp://127.0.0.1:9/v1"])),
    "providers-no-scheme": ("ORCHESTRATOR_PROVIDERS", providers([ONE, "127.0.0.1:10/v1"])),
    "providers-number-entry": ("ORCHESTRATOR_PROVIDERS", providers([ONE, 8080])),
    "providers-empty-string-entry": ("ORCHESTRATOR_PROVIDERS", providers([ONE, ""])),
    "providers-empty-list": ("ORCHESTRATOR_PROVIDERS", providers([])),
    "providers-duplicates": ("ORCHESTRATOR_PROVIDERS", providers([ONE, TWO, ONE])),
    "base-url-ftp-entry": ("ORCHESTRATOR_BASE_URL", f"{ONE},ftp://127.0.0.1:10/v1"),
    "base-url-javascript-entry": ("ORCHESTRATOR_BASE_URL", f"{ONE},javascript:alert(1)"),
    "base-url-duplicates": ("ORCHESTRATOR_BASE_URL", f"{ONE},{TWO},{ONE}"),
    "base-url-only-commas": ("ORCHESTRATOR_BASE_URL", " , , "),
}

GOOD = {
    "base-url-single": {"ORCHESTRATOR_BASE_URL": ONE},
    "providers-single-string": {"ORCHESTRATOR_PROVIDERS": providers(ONE)},
    "base-url-two": {"ORCHESTRATOR_BASE_URL": f"{ONE},{TWO}"},
    "base-url-two-spaced": {"ORCHESTRATOR_BASE_URL": f"{ONE}, {TWO}"},
    "providers-two": {"ORCHESTRATOR_PROVIDERS": providers([ONE, TWO])},
    "providers-one-in-a-list": {"ORCHESTRATOR_PROVIDERS": providers([ONE])},
}


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The test database (a launch that wrongly goes ahead writes there, nowhere else) and
    retries short enough that such a launch ends in seconds."""
    env = {
        name: value
        for name, value in manage_env().items()
        if not name.startswith("ORCHESTRATOR_") and name != "REDIS_URL"
    }
    env.update(
        {
            "ORCHESTRATOR_MODEL": "llama-cpp/tiny",
            "ORCHESTRATOR_ALLOWED_ROOTS": str(tmp_path),
            "ORCHESTRATOR_RETRY_SECONDS": "1",
            **settings,
        }
    )
    return env


def manage(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """`manage.py ARGS`: its exit code and its whole output (a launch that runs on past a
    minute has taken the bad setting, and says so)."""
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as timeout:
        output = (
            (timeout.stdout or b"").decode(errors="replace")
            if isinstance(timeout.stdout, bytes)
            else str(timeout.stdout or "")
        )
        pytest.fail(f"accepted: {args[0]} was still running after 60s:\n{output[-1500:]}")
    return done.returncode, (done.stdout + done.stderr).strip()


COMMANDS = {
    "check": ("check",),
    "launch_flow": ("launch_flow", "code-review", "--band", "small", "--wait"),
}


# Every case through `check`; three through `launch_flow` too (each process takes seconds).
DJANGO_CHECK_FRAME = re.compile(
    r"^(SystemCheckError: System check identified some issues:|ERRORS:|WARNINGS:"
    r"|System check identified \d+ issues? \(\d+ silenced\)\.)$"
)
REFUSALS = [(case, "check") for case in BAD] + [
    (case, "launch_flow")
    for case in ("providers-ftp-entry", "providers-duplicates", "base-url-ftp-entry")
]


@pytest.mark.parametrize(("case", "command"), REFUSALS)
def test_a_bad_endpoint_list_is_refused_in_one_line(
    tmp_path: Path, shop: Path, case: str, command: str
) -> None:
    setting, value = BAD[case]
    args = COMMANDS[command]
    if command == "launch_flow":
        args = (*args, "--target", str(shop))
    returncode, output = manage(*args, env=environment(tmp_path, **{setting: value}))
    lines = [line for line in output.splitlines() if line.strip()]
    made = RUN_ID.search(output)
    assert not made, (
        f"{case}: accepted, launch_flow made {made and made.group(0)}:\n{output[-1500:]}"
    )
    assert returncode != 0, f"{case}: accepted ({command} exit 0):\n{output[:1500]}"
    assert TRACEBACK not in output, f"{case}: a traceback instead of a sentence:\n{output[:3000]}"
    # Django's system-check frame around the sentence is allowed (its heading, "ERRORS:", the
    # count); what the person reads about their setting is one line naming it.
    sentences = [line for line in lines if not DJANGO_CHECK_FRAME.match(line.strip())]
    assert len(sentences) == 1, f"{case}: not one line but {len(sentences)}:\n{output[:1500]}"
    assert setting in sentences[0], f"{case}: the line does not name {setting}:\n{output[:1500]}"


@pytest.mark.parametrize("case", GOOD)
def test_a_good_endpoint_setting_passes_the_start_checks(tmp_path: Path, case: str) -> None:
    returncode, output = manage("check", env=environment(tmp_path, **GOOD[case]))
    assert returncode == 0, f"{case}: refused:\n{output[:1500]}"
    assert TRACEBACK not in output
