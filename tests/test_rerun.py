"""Re-run: a finished run launches again with the same settings, or opens the launcher filled in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from runs.models import FlowRun, WorkspaceLayout
from runs.services import launch_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_re_run_launches_a_new_run_with_the_same_settings_and_opens_its_pane(
    alice: Any, alice_client: Client, finished_run: FlowRun
) -> None:
    response = alice_client.post(f"/runs/{finished_run.id}/rerun/")
    new = FlowRun.objects.exclude(id=finished_run.id).get()
    assert response.status_code == 302 and response["Location"] == new.get_absolute_url()
    settings = ("flow", "band", "fast", "target", "focus", "owner_id", "model")
    assert [getattr(new, s) for s in settings] == [getattr(finished_run, s) for s in settings]
    assert new.status == "pending" and new.steps.count() == finished_run.steps.count()
    assert WorkspaceLayout.objects.get(owner=alice).open_runs[0] == new.id


def test_re_run_from_an_embedded_pane_leaves_it_and_names_the_new_run_for_the_host(
    alice_client: Client, finished_run: FlowRun
) -> None:
    """The embedded pane is not navigated away: the answer names the new run, which the pane
    passes to its host (`run.opened`) to open beside it, and the workspace remembers both."""
    response = alice_client.post(
        f"/runs/{finished_run.id}/rerun/",
        headers={"HX-Request": "true", "HX-Current-URL": f"/runs/{finished_run.id}/?embed=1"},
    )
    new = FlowRun.objects.exclude(id=finished_run.id).get()
    assert response.status_code == 204
    assert "HX-Redirect" not in response
    opened = json.loads(response["HX-Trigger"])["orchestrator:run-opened"]
    assert opened == {"run": str(new.id), "pane_url": new.get_absolute_url()}
    assert WorkspaceLayout.objects.get(owner=new.owner).open_runs[0] == new.id


def test_another_persons_run_cannot_be_re_run(bob: Any, finished_run: FlowRun) -> None:
    client = Client()
    client.force_login(bob)
    assert client.post(f"/runs/{finished_run.id}/rerun/").status_code == 404
    assert client.get(f"/runs/{finished_run.id}/rerun/changes/").status_code == 404
    assert FlowRun.objects.count() == 1


def test_a_run_still_going_is_not_re_run(alice: Any, alice_client: Client, target_dir: Path):
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    response = alice_client.post(f"/runs/{run.id}/rerun/")
    assert response.status_code == 409 and b"still going" in response.content
    assert FlowRun.objects.count() == 1


def test_re_run_with_changes_opens_the_launcher_filled_in(
    alice_client: Client, finished_run: FlowRun
) -> None:
    response = alice_client.get(f"/runs/{finished_run.id}/rerun/changes/", follow=True)
    html = response.content.decode()
    assert re.search(r'<dialog id="launcher"[^>]*data-open-filled', html)
    assert re.search(r'<option value="code-review" selected>', html)
    assert f'value="{finished_run.target}"' in html
    assert "&lt;b&gt;auth&lt;/b&gt;</textarea>" in html  # the focus, escaped
    assert FlowRun.objects.count() == 1  # nothing launched until the person says so


def test_the_pane_and_the_history_offer_re_run_for_a_finished_run(
    alice_client: Client, finished_run: FlowRun
) -> None:
    pane = alice_client.get(f"/runs/{finished_run.id}/").content.decode()
    history = alice_client.get("/runs/").content.decode()
    for html in (pane, history):
        assert f'hx-post="/runs/{finished_run.id}/rerun/"' in html
        assert f'href="/runs/{finished_run.id}/rerun/changes/"' in html
