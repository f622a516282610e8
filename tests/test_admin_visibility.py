"""The admin shows a staff user what the pane would: their own runs and what hangs off them.

alice owns a finished run (with steps, sessions, events); bob is staff with every view
permission of the runs app but no superuser, and owns a run of his own; charlie is neither.
A superuser sees everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from runs.models import AgentEvent, AgentSession, FlowRun, FlowStep
from runs.services import launch_run

pytestmark = pytest.mark.django_db

MODELS = ("flowrun", "flowstep", "agentsession", "agentevent")


@pytest.fixture
def staff_bob(bob: Any) -> Any:
    bob.is_staff = True
    bob.save()
    bob.user_permissions.set(
        Permission.objects.filter(content_type__app_label="runs", codename__startswith="view_")
    )
    return bob


@pytest.fixture
def bobs_run(staff_bob: Any, target_dir: Path) -> FlowRun:
    return launch_run(flow="research", target=str(target_dir), owner=staff_bob)


@pytest.fixture
def root(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", password="root-pass-123")


def alices_rows(run: FlowRun) -> dict[str, Any]:
    """One object of each model, all belonging to alice's run."""
    step = FlowStep.objects.filter(run=run).first()
    session = AgentSession.objects.filter(step__run=run).first()
    event = AgentEvent.objects.filter(step__run=run).first()
    assert step and session and event
    return {
        "flowrun": run.pk,
        "flowstep": step.pk,
        "agentsession": session.pk,
        "agentevent": event.pk,
    }


def change_page(client: Client, model: str, pk: Any) -> Any:
    return client.get(f"/admin/runs/{model}/{pk}/change/", follow=False)


def test_a_staff_user_sees_only_their_own_runs_in_every_list(
    client_for, staff_bob, bobs_run, finished_run
):
    client = client_for(staff_bob)
    runs = client.get("/admin/runs/flowrun/").content.decode()
    assert str(bobs_run.id) in runs and str(finished_run.id) not in runs
    steps = client.get("/admin/runs/flowstep/").context["cl"].result_list
    assert {s.run_id for s in steps} == {bobs_run.id}
    for model in ("agentsession", "agentevent"):
        listing = client.get(f"/admin/runs/{model}/")
        assert listing.status_code == 200
        assert list(listing.context["cl"].result_list) == [], model


def test_a_staff_user_cannot_open_another_users_rows_by_id(client_for, staff_bob, finished_run):
    """Every change page of alice's rows answers as if they did not exist."""
    client = client_for(staff_bob)
    for model, pk in alices_rows(finished_run).items():
        response = change_page(client, model, pk)
        assert response.status_code == 302 and response["Location"] == "/admin/", model
        history = client.get(f"/admin/runs/{model}/{pk}/history/")
        assert history.status_code == 302, model


def test_a_staff_user_cannot_cancel_another_users_run_from_the_admin(
    client_for, staff_bob, bobs_run, target_dir
):
    """The cancel action works on the runs the list shows, never on a forged selection."""
    alice_run = launch_run(flow="research", target=str(target_dir))  # someone else's
    client = client_for(staff_bob)
    client.post(
        "/admin/runs/flowrun/",
        {"action": "cancel_runs", "_selected_action": [str(alice_run.id)]},
    )
    alice_run.refresh_from_db()
    assert alice_run.status == "pending"


def test_search_does_not_reach_another_users_runs(client_for, staff_bob, finished_run):
    """alice's focus text is not found through bob's search."""
    client = client_for(staff_bob)
    found = client.get("/admin/runs/flowrun/", {"q": "auth"}).context["cl"].result_list
    assert list(found) == []


def test_the_owner_as_staff_sees_their_own_rows(client_for, alice, finished_run):
    alice.is_staff = True
    alice.save()
    alice.user_permissions.set(
        Permission.objects.filter(content_type__app_label="runs", codename__startswith="view_")
    )
    client = client_for(alice)
    for model, pk in alices_rows(finished_run).items():
        assert change_page(client, model, pk).status_code == 200, model


def test_a_superuser_sees_everyones_rows(client_for, root, bobs_run, finished_run):
    client = client_for(root)
    runs = client.get("/admin/runs/flowrun/").content.decode()
    assert str(bobs_run.id) in runs and str(finished_run.id) in runs
    for model, pk in alices_rows(finished_run).items():
        assert change_page(client, model, pk).status_code == 200, model


def test_an_outsider_gets_the_admin_login_and_nothing_else(
    client_for, django_user_model, finished_run
):
    charlie = django_user_model.objects.create_user("charlie", password="charlie-pass-123")
    client = client_for(charlie)
    for model, pk in alices_rows(finished_run).items():
        response = change_page(client, model, pk)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], model
