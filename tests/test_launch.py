"""Launching validates its input and creates the run's DAG in one go."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.registry import CATALOG, slash_menu
from runs.models import FlowRun, StepStatus
from runs.services import LaunchError, launch_run

pytestmark = pytest.mark.django_db


def test_it_creates_the_band_roster_with_only_dependency_free_steps_ready(target_dir: Path):
    """A small code review has two specialists ready and the spine waiting behind them."""
    run = launch_run(flow="code-review", target=str(target_dir), focus="auth")
    steps = {s.key: s for s in run.steps.all()}
    assert set(steps) == {"correctness", "security", "synthesis", "validation"}
    assert steps["correctness"].status == StepStatus.READY
    assert steps["synthesis"].status == StepStatus.PENDING
    assert steps["synthesis"].depends_on == ["correctness", "security"]
    assert run.target == str(target_dir.resolve())
    assert run.model == "llama-swap/qwen3.6-35b-a3b-mxfp4"


def test_larger_bands_run_more_specialists(target_dir: Path):
    """Breadth grows with the band: small < medium < large."""
    sizes = [
        launch_run(flow="code-review", target=str(target_dir), band=band).steps.count()
        for band in ("small", "medium", "large")
    ]
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flow": "nope"}, "unknown flow 'nope'; valid flows: api-design, architectural-analysis"),
        ({"band": "huge"}, "unknown band 'huge'; valid bands: small, medium, large"),
        ({"target": "/definitely/not/here"}, "it is not one you were given, or it does not exist"),
        ({"target": ""}, "A target directory is required"),
        ({"focus": "x" * 5000}, "focus text is too long"),
        ({"focus": "auth\x00"}, "the focus text contains a NUL byte"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_created(
    target_dir: Path, kwargs: dict[str, str], message: str
):
    """Each bad input names what is wrong; no run row is left behind."""
    args = {"flow": "code-review", "target": str(target_dir), **kwargs}
    with pytest.raises(LaunchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launch_run(**args)  # type: ignore[arg-type]
    assert FlowRun.objects.count() == 0


def test_a_file_is_not_a_target(target_dir: Path):
    """The target must be a directory."""
    with pytest.raises(LaunchError, match="That path is not a directory"):
        launch_run(flow="research", target=str(target_dir / "README.md"))


def test_targets_outside_the_allowed_roots_are_refused(settings, target_dir: Path, tmp_path):
    """ORCHESTRATOR_ALLOWED_ROOTS fences where agents may read."""
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [tmp_path / "elsewhere"]
    with pytest.raises(LaunchError, match="not one you were given, or it does not exist"):
        launch_run(flow="research", target=str(target_dir))


def test_a_symlink_into_a_forbidden_place_is_judged_by_where_it_leads(settings, tmp_path):
    """A link inside an allowed root that points outside it is refused."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/etc")
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [allowed]
    with pytest.raises(LaunchError, match="not one you were given, or it does not exist"):
        launch_run(flow="research", target=str(allowed / "escape"))


@pytest.mark.parametrize("flow", ["runbook", "zzzz"])
def test_the_slash_command_launches_only_the_slash_menus_flows(
    client_for, alice, target_dir: Path, flow: str
):
    """A draft flow (or an unknown one) typed after / is refused with the menu's own list;
    the Orchestrator button still launches the draft."""
    menu = [f.slug for f in slash_menu()]
    assert len(menu) == 11 and "runbook" not in menu and "runbook" in CATALOG
    expected = (
        f"{flow!r} is not a slash command; type / for one of: {', '.join(menu)}. "
        "The Orchestrator button offers the other flows."
    )
    fields = {"flow": flow, "target": str(target_dir), "origin": "slash", "host_pane": "chat"}
    refused = client_for(alice).post("/launch/", fields)
    assert (refused.status_code, refused.json()) == (400, {"error": expected})
    with pytest.raises(LaunchError) as raised:
        launch_run(flow=flow, target=str(target_dir), owner=alice, origin="slash")
    assert str(raised.value) == expected
    assert FlowRun.objects.count() == 0
    if flow == "runbook":
        button = client_for(alice).post("/launch/", {**fields, "origin": "button"})
        assert button.status_code == 201
