"""Every process checks its settings when it starts: a bad variable stops `manage.py check`
(and so `serve`, `runworker`, `launch_flow`) with a sentence naming it, in one format (exit
status 2), never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.testing import ROOT


def manage_check(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return manage(tmp_path, "check", **variables)


def manage(tmp_path: Path, *command: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_ALLOWED_ROOTS": str(tmp_path), **variables}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


BAD_SETTINGS = {
    "a model without a provider": (
        {"ORCHESTRATOR_MODEL": "no-slash"},
        "ORCHESTRATOR_MODEL must look like provider/model",
    ),
    "an unknown provider": (
        {"ORCHESTRATOR_MODEL": "nowhere/qwen"},
        "ORCHESTRATOR_MODEL names provider 'nowhere'",
    ),
    "a provider with zero slots": (
        {"ORCHESTRATOR_PROVIDERS": json.dumps({"lab": {"base_url": "http://h/v1", "slots": 0}})},
        "ORCHESTRATOR_PROVIDERS['lab'] is invalid: slots",
    ),
    "a provider with an ftp base URL": (
        {"ORCHESTRATOR_PROVIDERS": json.dumps({"lab": {"base_url": "ftp://h/v1"}})},
        "ORCHESTRATOR_PROVIDERS['lab'] is invalid: base_url",
    ),
    "a provider with an unknown key": (
        {"ORCHESTRATOR_PROVIDERS": json.dumps({"lab": {"base_url": "http://h", "slotz": 2}})},
        "ORCHESTRATOR_PROVIDERS['lab'] is invalid: slotz",
    ),
    "providers that are not a JSON object": (
        {"ORCHESTRATOR_PROVIDERS": "[1, 2]"},
        "ORCHESTRATOR_PROVIDERS must be a JSON object",
    ),
    "the selected provider with no base URL": (
        {"ORCHESTRATOR_PROVIDERS": json.dumps({"lab": {}}), "ORCHESTRATOR_MODEL": "lab/q"},
        "ORCHESTRATOR_MODEL names provider 'lab', which has no base_url",
    ),
    "a base URL that is not http": (
        {"ORCHESTRATOR_BASE_URL": "ftp://127.0.0.1:8080/v1"},
        "ORCHESTRATOR_BASE_URL must be an http:// or https:// URL",
    ),
    "a base URL list with an ftp entry": (
        {"ORCHESTRATOR_BASE_URL": "http://127.0.0.1:8081/v1,ftp://127.0.0.1:8082/v1"},
        "ORCHESTRATOR_BASE_URL must be an http:// or https:// URL, got 'ftp://127.0.0.1:8082/v1'",
    ),
    "a base URL list naming one endpoint twice": (
        {"ORCHESTRATOR_BASE_URL": "http://127.0.0.1:8081/v1, http://127.0.0.1:8081/v1/"},
        "ORCHESTRATOR_BASE_URL lists 'http://127.0.0.1:8081/v1' twice",
    ),
    "a base URL with a port out of range": (
        {"ORCHESTRATOR_BASE_URL": "http://127.0.0.1:18101/v1,http://127.0.0.1:99999/v1"},
        "Configuration error: ORCHESTRATOR_BASE_URL must give a port that is a number from 1 "
        "to 65535, got 'http://127.0.0.1:99999/v1'",
    ),
    "a provider's endpoint with a port out of range": (
        {"ORCHESTRATOR_PROVIDERS": json.dumps({"lab": {"base_url": "http://h:99999/v1"}})},
        "ORCHESTRATOR_PROVIDERS['lab'] is invalid: base_url: must give a port that is a number from 1 to 65535",
    ),
    "a base URL list naming one server under two spellings": (
        {"ORCHESTRATOR_BASE_URL": "http://127.0.0.1:18101/v1,HTTP://127.0.0.1:18101"},
        "ORCHESTRATOR_BASE_URL lists one server twice: 'http://127.0.0.1:18101/v1' and "
        "'HTTP://127.0.0.1:18101'",
    ),
    "a base URL that is JSON but not a list": (
        {"ORCHESTRATOR_BASE_URL": '{"url": "http://127.0.0.1:18101/v1"}'},
        "ORCHESTRATOR_BASE_URL must be comma-separated URLs or a JSON list of URL strings, "
        "got a JSON object",
    ),
    "a base URL list separated by semicolons": (
        {"ORCHESTRATOR_BASE_URL": "http://127.0.0.1:18101/v1;http://127.0.0.1:18102/v1"},
        "ORCHESTRATOR_BASE_URL must separate endpoints with commas",
    ),
    "a base URL list separated by spaces": (
        {"ORCHESTRATOR_BASE_URL": "http://127.0.0.1:18101/v1 http://127.0.0.1:18102/v1"},
        "ORCHESTRATOR_BASE_URL must separate endpoints with commas",
    ),
    "a chat webhook with a port out of range": (
        {"ORCHESTRATOR_CHAT_WEBHOOK": "https://chat.example:70000/hook"},
        "ORCHESTRATOR_CHAT_WEBHOOK must give a port that is a number from 1 to 65535",
    ),
    "a provider listing an empty endpoint": (
        {"ORCHESTRATOR_PROVIDERS": json.dumps({"lab": {"base_url": ["http://h:1/v1", ""]}})},
        "ORCHESTRATOR_PROVIDERS['lab'] is invalid: base_url",
    ),
    "slots that are not a number": (
        {"ORCHESTRATOR_SLOTS": "four"},
        "ORCHESTRATOR_SLOTS must be a whole number",
    ),
    "more slots than a server takes": (
        {"ORCHESTRATOR_SLOTS": "100000"},
        "ORCHESTRATOR_SLOTS must be at most 256",
    ),
    "negative retry seconds": (
        {"ORCHESTRATOR_RETRY_SECONDS": "-1"},
        "ORCHESTRATOR_RETRY_SECONDS must be at least 0",
    ),
    "zero attempts": (
        {"ORCHESTRATOR_MAX_ATTEMPTS": "0"},
        "ORCHESTRATOR_MAX_ATTEMPTS must be at least 1",
    ),
    "a demo token rate that is not a number": (
        {"ORCHESTRATOR_DEMO_TOKEN_RATE": "fast"},
        "ORCHESTRATOR_DEMO_TOKEN_RATE must be a number",
    ),
    "a chat webhook that is not a URL": (
        {"ORCHESTRATOR_CHAT_WEBHOOK": "chat.example"},
        "ORCHESTRATOR_CHAT_WEBHOOK must be an http:// or https:// URL",
    ),
    "a shared root outside the allowed roots": (
        {"ORCHESTRATOR_SHARED_ROOTS": "/"},
        "ORCHESTRATOR_SHARED_ROOTS lists '/', which is not inside ORCHESTRATOR_ALLOWED_ROOTS",
    ),
}


@pytest.mark.parametrize("variables, sentence", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_manage_check_refuses_a_bad_setting_with_a_sentence_naming_it(
    tmp_path: Path, variables: dict[str, str], sentence: str
):
    result = manage_check(tmp_path, **variables)
    assert result.returncode == 2, result.stderr
    assert "Configuration error: " + sentence.removeprefix("Configuration error: ") in (
        result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout
    assert "(orchestrator." not in result.stderr  # no system check's "?: (id)" prefix


PLAIN_REFUSALS = {
    "a provider's bad setting": (
        {"ORCHESTRATOR_PROVIDERS": json.dumps({"lab": {"base_url": "http://h/v1", "slots": 0}})},
        "Configuration error: ORCHESTRATOR_PROVIDERS['lab'] is invalid: slots",
    ),
    "more slots than a server takes": (
        {"ORCHESTRATOR_SLOTS": "100000"},
        "Configuration error: ORCHESTRATOR_SLOTS must be at most 256, got 100000",
    ),
    "a shared root outside the allowed roots": (
        {"ORCHESTRATOR_SHARED_ROOTS": "/"},
        "Configuration error: ORCHESTRATOR_SHARED_ROOTS lists '/'",
    ),
    "a base URL": (
        {"ORCHESTRATOR_BASE_URL": "ftp://127.0.0.1:8080/v1"},
        "Configuration error: ORCHESTRATOR_BASE_URL must be an http:// or https:// URL",
    ),
}
COMMANDS = {
    "check": ("check",),
    "serve": ("serve", "--port", "1", "--no-worker"),
    "launch_flow": ("launch_flow", "code-review", "--band", "small", "--wait", "--target"),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize("variables, line", PLAIN_REFUSALS.values(), ids=PLAIN_REFUSALS.keys())
def test_every_bad_setting_is_refused_in_one_plain_format_by_every_command(
    tmp_path: Path, command: tuple[str, ...], variables: dict[str, str], line: str
):
    """The settings.py refusals and the ones checked with the code that uses them read
    alike: one line starting "Configuration error:", exit status 2, whichever command."""
    target = (str(tmp_path),) if command[-1] == "--target" else ()
    result = manage(tmp_path, *command, *target, **variables)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(line), result.stderr
    assert "SystemCheckError" not in result.stderr
    assert "?: " not in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_every_bad_setting_is_said_on_a_line_of_its_own(tmp_path: Path):
    result = manage_check(tmp_path, ORCHESTRATOR_SLOTS="100000", ORCHESTRATOR_SHARED_ROOTS="/")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Configuration error: ORCHESTRATOR_SLOTS must be at most 256")
    assert lines[1].startswith("Configuration error: ORCHESTRATOR_SHARED_ROOTS lists '/'")


def test_manage_check_passes_the_demo_model_and_a_provider_of_ones_own(tmp_path: Path):
    """The same checks accept what the README configures, so a refusal above is the value's."""
    result = manage_check(
        tmp_path,
        ORCHESTRATOR_MODEL="lab/qwen",
        ORCHESTRATOR_PROVIDERS=json.dumps({"lab": {"base_url": "http://127.0.0.1:9/v1"}}),
        ORCHESTRATOR_SHARED_ROOTS=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
    demo = manage_check(tmp_path, ORCHESTRATOR_MODEL="demo/scripted")
    assert demo.returncode == 0, demo.stderr
    several = manage_check(
        tmp_path,
        ORCHESTRATOR_MODEL="lab/qwen",
        ORCHESTRATOR_PROVIDERS=json.dumps(
            {"lab": {"base_url": ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]}}
        ),
        ORCHESTRATOR_BASE_URL="http://127.0.0.1:11/v1,http://127.0.0.1:12/v1",
    )
    assert several.returncode == 0, several.stderr
    as_json = manage_check(
        tmp_path,
        ORCHESTRATOR_MODEL="lab/qwen",
        ORCHESTRATOR_PROVIDERS=json.dumps({"lab": {"base_url": "http://127.0.0.1:9/v1"}}),
        ORCHESTRATOR_BASE_URL='["http://127.0.0.1:18101/v1", "http://127.0.0.1:18102/v1"]',
    )
    assert as_json.returncode == 0, as_json.stderr
