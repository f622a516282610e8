"""The engine asks the model server how many slots it has (issue 10, item 6).

llama.cpp says it at `GET /props` (`total_slots`); llama-swap routes `/props?model=NAME` to
the model's server, and older versions answer at `/upstream/NAME/props`. The answer is the
slot cap when ORCHESTRATOR_SLOTS is not set; a setting above it is warned about in the log,
the CLI and the pane.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from runs.demo.server import ScriptedModelServer
from runs.engine.agent.backends.openai import probe_props, server_root
from runs.live import pane_state, render_header
from runs.models import FlowRun, RunStatus
from runs.server_slots import ServerSlots, host_port, method_words, slot_warning
from runs.services import launch_run


class _LlamaSwapLike(BaseHTTPRequestHandler):
    """Only llama-swap's direct route to a model's server answers."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/upstream/qwen/props":
            body = json.dumps({"total_slots": 3, "default_generation_settings": {"n_ctx": 4096}})
            status = 200
        else:
            body, status = json.dumps({"error": "not found"}), 404
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def llama_swap_like() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LlamaSwapLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_props_is_read_at_the_server_root_beside_v1():
    assert server_root("http://h:8080/v1") == "http://h:8080"
    assert server_root("http://h:8080/v1/") == "http://h:8080"
    assert server_root("http://h/upstream/m/v1") == "http://h/upstream/m"
    with ScriptedModelServer(total_slots=2, n_ctx=2048) as server:
        props = asyncio.run(probe_props(server.url, "scripted"))
    assert props is not None
    assert (props.total_slots, props.n_ctx) == (2, 2048)
    assert props.source.endswith("/props")


def test_llama_swaps_upstream_route_is_tried_next(llama_swap_like: str):
    props = asyncio.run(probe_props(llama_swap_like, "qwen"))
    assert props is not None and props.total_slots == 3
    assert props.source.endswith("/upstream/qwen/props")


def test_a_server_without_props_or_with_nonsense_says_nothing(llama_swap_like: str):
    with ScriptedModelServer(total_slots=None) as server:
        assert asyncio.run(probe_props(server.url, "scripted")) is None
    assert asyncio.run(probe_props(llama_swap_like, "other-model")) is None
    assert asyncio.run(probe_props("http://127.0.0.1:9/v1", "x", timeout=0.5)) is None


@pytest.mark.django_db(transaction=True)
def test_without_a_setting_the_servers_own_slots_are_the_cap(
    run_to_end, settings: Any, scripted_model: Any, target_dir: Path
):
    """The demo provider would allow 4; the server says 1, so one request at a time."""
    settings.ORCHESTRATOR_SLOTS = 0
    scripted_model.total_slots = 1
    scripted_model.token_rate = 100.0
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    assert run.status == RunStatus.SUCCEEDED
    assert (run.slots, run.server_slots) == (1, 1)
    assert not run.slot_warning
    assert scripted_model.open_requests.peak == 1


@pytest.mark.django_db(transaction=True)
def test_a_setting_above_the_servers_slots_is_warned_in_the_log_the_cli_and_the_pane(
    settings: Any, scripted_model: Any, target_dir: Path, caplog: Any
):
    settings.ORCHESTRATOR_SLOTS = 2
    scripted_model.total_slots = 1
    out = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="runs"):
        call_command("launch_flow", "code-review", target=str(target_dir), wait=True, stdout=out)
    run = FlowRun.objects.get()
    assert (run.slots, run.server_slots) == (2, 1)
    assert "ORCHESTRATOR_SLOTS is 2 but the model server at" in caplog.text
    warning = "warning: the slot cap is 2 but " + scripted_model.url + " has 1 slot"
    assert out.getvalue().count(warning) == 1, out.getvalue()
    header = render_header(pane_state(run))
    assert 'data-testid="slot-warning"' in header
    assert "wait in the server&#x27;s own queue" in header
    assert "2 slots (the server has 1)" in run.report


@pytest.mark.django_db(transaction=True)
def test_a_setting_above_one_of_several_servers_slots_is_warned_naming_that_server(
    settings: Any, target_dir: Path, caplog: Any
):
    """Two servers, 4 slots and 1; ORCHESTRATOR_SLOTS=2 is within the first's and above the
    second's. Summed, 4 slots against 5 would look fine: the warning in the log, the CLI and
    the pane names the second server, and Method says each server's cap and count."""
    with (
        ScriptedModelServer(total_slots=4, token_rate=200.0) as big,
        ScriptedModelServer(total_slots=1, token_rate=200.0) as small,
    ):
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        settings.ORCHESTRATOR_BASE_URL = f"{big.url},{small.url}"
        settings.ORCHESTRATOR_SLOTS = 2
        out = io.StringIO()
        with caplog.at_level(logging.WARNING, logger="runs"):
            call_command(
                "launch_flow", "code-review", target=str(target_dir), wait=True, stdout=out
            )
    run = FlowRun.objects.get()
    big_name, small_name = (host_port(big.url), host_port(small.url))
    assert f"ORCHESTRATOR_SLOTS is 2 but the model server at {small.url} has 1" in caplog.text
    warning = f"warning: {small_name} has 1 slot but a cap of 2"
    assert out.getvalue().count(warning) == 1, out.getvalue()
    assert big_name not in run.slot_warning
    assert "set it to at most 1" in run.slot_warning
    header = render_header(pane_state(run))
    assert 'data-testid="slot-warning"' in header
    assert f"{small_name} has 1 slot but a cap of 2" in header
    assert f"4 slots on 2 servers: 2 at {big_name} (it has 4), 2 at {small_name} (it has 1)" in (
        run.report
    )
    assert "the server has" not in run.report


@pytest.mark.django_db(transaction=True)
def test_the_method_section_gives_each_of_several_servers_its_own_slots(
    run_to_end, settings: Any, target_dir: Path
):
    """Without a setting each server's own count is its cap: no "the server has" for two."""
    with (
        ScriptedModelServer(total_slots=3, token_rate=200.0) as first,
        ScriptedModelServer(total_slots=1, token_rate=200.0) as second,
    ):
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        settings.ORCHESTRATOR_BASE_URL = f"{first.url},{second.url}"
        settings.ORCHESTRATOR_SLOTS = 0
        run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    assert (run.slots, run.server_slots) == (4, 4)
    assert not run.slot_warning
    names = host_port(first.url), host_port(second.url)
    assert f"4 slots on 2 servers: 3 at {names[0]}, 1 at {names[1]}." in run.report


def test_the_slot_words_never_pass_off_a_count_no_server_said():
    """A server that never answered /props: its cap is the provider's default, said so."""
    down = [
        ServerSlots(url="http://127.0.0.1:20032/v1", cap=4),
        ServerSlots(url="http://127.0.0.1:20033/v1", cap=4),
    ]
    assert method_words(down) == (
        "slots not known: none of the 2 servers said how many it has, so the provider's "
        "default (4 each) applied"
    )
    assert method_words(down[:1]).startswith("slots not known: the server said")
    one_up = [ServerSlots(url=down[0].url, cap=2, has=2), down[1]]
    assert method_words(one_up) == (
        "6 slots on 2 servers: 2 at 127.0.0.1:20032, 4 at 127.0.0.1:20033 (the provider's "
        "default; it did not say how many it has)"
    )
    set_by_hand = [ServerSlots(url=down[0].url, cap=2, set=True)]
    assert method_words(set_by_hand) == "2 slots (as set; the server did not say how many it has)"
    assert slot_warning(down) == ""
