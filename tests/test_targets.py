"""Who may analyse what (runs.targets), at every door: the launch form, the slash command,
`launch_flow --user`, the retries, the checked lines and the exports. alice owns a project,
bob is a second user who was not given it, charlie an outsider in a group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client

from devtools.testing import write_project
from runs import services
from runs.models import ChatMessage, FlowRun, RunStatus, TargetGrant
from runs.targets import REFUSAL, RUN_REFUSAL


@pytest.fixture
def projects(settings: Any, tmp_path: Path) -> Path:
    """A team's server: one allowed root, nothing shared by default, alice given her project."""
    root = (tmp_path / "projects").resolve()
    root.mkdir()
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [root]
    settings.ORCHESTRATOR_SHARED_ROOTS = []
    return root


@pytest.fixture
def alices_project(projects: Path, alice: Any) -> Path:
    project = write_project(projects / "alice")
    TargetGrant.objects.create(directory=str(projects / "alice"), user=alice)
    return project


@pytest.fixture
def root_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", password="root-pass-123")


@pytest.fixture
def refusal_at_every_launch_door(client_for: Any) -> Any:
    """`refusal_at_every_launch_door(user, target)`: the sentence each launch door answers
    for this target (and that nothing was created)."""

    def refusals(user: Any, target: str) -> list[str]:
        before = FlowRun.objects.count()
        answers = []
        client = client_for(user)
        for fields in (
            {"origin": "button"},
            {"origin": "slash", "host_pane": "chat", "band": "small"},
        ):
            response = client.post("/launch/", {"flow": "code-review", "target": target, **fields})
            assert response.status_code == 400, (target, response.content)
            answers.append(json.loads(response.content)["error"])
        with pytest.raises(CommandError) as cli:
            call_command("launch_flow", "code-review", "--target", target, "--user", user.username)
        answers.append(str(cli.value))
        with pytest.raises(services.LaunchError) as service:
            services.launch_run(flow="code-review", target=target, owner=user)
        answers.append(str(service.value))
        assert FlowRun.objects.count() == before, "a refused launch creates nothing"
        return answers

    return refusals


@pytest.mark.django_db
def test_bob_cannot_launch_on_alices_project_and_the_refusal_never_says_whether_a_path_exists(
    refusal_at_every_launch_door, alice: Any, bob: Any, alices_project: Path, projects: Path
):
    targets = [
        str(alices_project),  # exists, under the roots, not his
        str(alices_project / "app" / "views.py"),  # a file of hers
        str(projects / "alice" / "no-such-project"),  # missing, under the roots
        str(projects / "nobody"),  # missing, nobody's
        "/etc",  # exists, outside the roots
        "/definitely/not/here",  # missing, outside the roots
        "/proc/self/cwd",  # the server's working directory
        "/proc/1/cwd",
        "~",
        f"{alices_project}/../../alice/shop",
    ]
    for target in targets:
        answers = refusal_at_every_launch_door(bob, target)
        assert answers == [REFUSAL] * 4, target
    # Nothing real is echoed back: not the project, not the server's working directory.
    assert str(Path.cwd()) not in REFUSAL and str(projects) not in REFUSAL
    run = services.launch_run(flow="code-review", target=str(alices_project), owner=alice)
    assert run.target == str(alices_project), "the owner launches as before"
    print(f"bob refused on {len(targets)} targets x 4 doors with one sentence")


@pytest.mark.django_db
def test_a_link_inside_a_users_project_is_judged_by_where_it_leads(
    refusal_at_every_launch_door, bob: Any, alices_project: Path, projects: Path
):
    bobs = projects / "bob"
    bobs.mkdir()
    TargetGrant.objects.create(directory=str(bobs), user=bob)
    (bobs / "into-alices").symlink_to(alices_project)
    assert refusal_at_every_launch_door(bob, str(bobs / "into-alices")) == [REFUSAL] * 4
    write_project(bobs)
    assert services.launch_run(flow="research", target=str(bobs / "shop"), owner=bob).owner == bob


@pytest.mark.django_db
def test_bob_cannot_retry_view_the_checked_lines_of_or_export_a_run_once_not_given_the_directory(
    client_for, finish_run, run_with, bob: Any, alices_project: Path, projects: Path
):
    """bob was given alice's project for a while; his runs on it stop at every door after."""
    lent = TargetGrant.objects.create(directory=str(projects / "alice"), user=bob)
    run = run_with(alices_project, bob)
    failed = services.launch_run(flow="code-review", target=str(alices_project), owner=bob)

    failed = finish_run(failed, report="## Findings\n", fail="security")
    cancelled = services.launch_run(flow="code-review", target=str(alices_project), owner=bob)
    services.cancel_run(cancelled.id)
    client = client_for(bob)
    citation = f"/runs/{run.id}/citations/0/"
    assert client.get(citation).status_code == 200, "while given, bob sees the lines"
    assert client.get(f"/runs/{run.id}/export.md").status_code == 200
    assert "subprocess" in client.get(f"/runs/{run.id}/").content.decode(), "and the pane"
    lent.delete()

    retry = client.post(f"/runs/{failed.id}/steps/security/retry/")
    assert (retry.status_code, retry.content.decode()) == (403, RUN_REFUSAL)
    retry_all = client.post(f"/runs/{cancelled.id}/retry-cancelled/")
    assert (retry_all.status_code, retry_all.content.decode()) == (403, RUN_REFUSAL)
    with pytest.raises(services.LaunchError, match=RUN_REFUSAL):
        services.retry_step(failed.id, "security", user=bob)  # the admin's action asks this too
    pages = (f"/runs/{run.id}/", citation, f"/runs/{run.id}/export.md")
    for url in (*pages, f"/runs/{run.id}/export.json"):
        page = client.get(url)
        assert page.status_code == 403, url
        assert RUN_REFUSAL in page.content.decode(), url
        assert "subprocess" not in page.content.decode(), url
    sent = client.post(f"/runs/{run.id}/send-to-chat/")
    assert sent.status_code == 403 and not ChatMessage.objects.exists()
    failed.refresh_from_db()
    cancelled.refresh_from_db()
    assert (failed.status, cancelled.status) == (
        RunStatus.FINISHED_WITH_FAILURES,
        RunStatus.CANCELLED,
    )


@pytest.mark.django_db
def test_the_api_withholds_the_report_of_a_run_whose_directory_was_taken_back(
    run_with, bob: Any, bob_token: str, alices_project: Path, projects: Path
):
    """/report and /report.json are the pane's exports: the same 403 sentence; the status
    stays readable but without the report's summary."""
    lent = TargetGrant.objects.create(directory=str(projects / "alice"), user=bob)
    run = run_with(alices_project, bob)
    headers = {"Authorization": f"Bearer {bob_token}"}
    api = Client()
    assert api.get(f"/api/v1/runs/{run.id}/report", headers=headers).status_code == 200
    lent.delete()

    for path in ("report", "report.json"):
        refused = api.get(f"/api/v1/runs/{run.id}/{path}", headers=headers)
        assert (refused.status_code, refused.json()) == (403, {"error": RUN_REFUSAL}), path
    status = api.get(f"/api/v1/runs/{run.id}", headers=headers)
    assert status.status_code == 200
    assert status.json()["report_withheld"] == RUN_REFUSAL
    assert run.summary and run.summary not in status.content.decode()


@pytest.mark.django_db
def test_retrying_over_the_api_on_a_run_whose_directory_was_taken_back_is_a_403(
    finish_run, bob: Any, bob_token: str, alices_project: Path, projects: Path
):
    """A refusal, not "cannot be retried now": the same 403 and sentence as the pane's."""
    lent = TargetGrant.objects.create(directory=str(projects / "alice"), user=bob)
    run = services.launch_run(flow="code-review", target=str(alices_project), owner=bob)
    run = finish_run(run, report="## Findings\n", fail="security")
    lent.delete()
    refused = Client().post(
        f"/api/v1/runs/{run.id}/steps/security/retry",
        headers={"Authorization": f"Bearer {bob_token}"},
    )
    assert (refused.status_code, refused.json()) == (403, {"error": RUN_REFUSAL})
    run.refresh_from_db()
    assert run.status == RunStatus.FINISHED_WITH_FAILURES


@pytest.mark.django_db
def test_a_user_root_gives_each_user_their_own_directory_and_no_one_elses(
    refusal_at_every_launch_door,
    settings: Any,
    tmp_path: Path,
    alice: Any,
    bob: Any,
    django_user_model: Any,
):
    home = (tmp_path / "home").resolve()
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [home / "{user}"]
    settings.ORCHESTRATOR_SHARED_ROOTS = []
    alices, bobs = write_project(home / "alice"), write_project(home / "bob")
    assert services.launch_run(flow="research", target=str(alices), owner=alice).owner == alice
    assert services.launch_run(flow="research", target=str(bobs), owner=bob).owner == bob
    assert refusal_at_every_launch_door(bob, str(alices)) == [REFUSAL] * 4
    # A user named ".." would climb out of the directory the entry names: it gets nothing.
    climber = django_user_model.objects.create_user("..", password="dots-pass-123")
    with pytest.raises(services.LaunchError, match=REFUSAL):
        services.launch_run(flow="research", target=str(alices), owner=climber)
    # The engine checks the same fence when it opens the target (any user's directory).
    from runs.engine.target.confinement import open_target

    assert open_target(FlowRun.objects.get(owner=alice)).root == alices


@pytest.mark.django_db
def test_grants_made_in_the_admin_to_a_user_and_to_a_group_let_exactly_those_users_in(
    refusal_at_every_launch_door,
    client_for,
    alice: Any,
    bob: Any,
    charlie: Any,
    root_user: Any,
    projects: Path,
    django_user_model: Any,
):
    shop, docs = write_project(projects / "shop"), write_project(projects / "docs")
    team = Group.objects.create(name="docs-team")
    charlie.groups.add(team)
    admin = client_for(root_user)
    for fields in ({"user": bob.pk}, {"group": team.pk}):
        directory = shop if "user" in fields else docs
        added = admin.post("/admin/runs/targetgrant/add/", {"directory": str(directory), **fields})
        assert added.status_code == 302, added.content.decode()
    listed = admin.get("/admin/runs/targetgrant/").content.decode()
    assert str(shop) in listed and str(docs) in listed

    assert services.launch_run(flow="research", target=str(shop), owner=bob).owner == bob
    assert services.launch_run(flow="research", target=str(docs), owner=charlie).owner == charlie
    assert refusal_at_every_launch_door(bob, str(docs)) == [REFUSAL] * 4
    assert refusal_at_every_launch_door(charlie, str(shop)) == [REFUSAL] * 4
    assert refusal_at_every_launch_door(alice, str(shop)) == [REFUSAL] * 4

    grant = TargetGrant.objects.get(user=bob)
    deleted = admin.post(f"/admin/runs/targetgrant/{grant.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert refusal_at_every_launch_door(bob, str(shop)) == [REFUSAL] * 4


@pytest.mark.django_db
def test_only_superusers_manage_grants_and_a_grant_outside_the_roots_is_refused(
    client_for, root_user: Any, projects: Path, django_user_model: Any, bob: Any
):
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    assert client_for(staff).get("/admin/runs/targetgrant/").status_code == 403
    assert client_for(staff).post("/admin/runs/targetgrant/add/", {}).status_code == 403
    outside = client_for(root_user).post(
        "/admin/runs/targetgrant/add/", {"directory": "/etc", "user": bob.pk}
    )
    assert outside.status_code == 200 and "outside ORCHESTRATOR_ALLOWED_ROOTS" in (
        outside.content.decode()
    )
    both = client_for(root_user).post(
        "/admin/runs/targetgrant/add/",
        {"directory": str(projects), "user": bob.pk, "group": Group.objects.create(name="g").pk},
    )
    assert "A grant is to one user or one group." in both.content.decode()
    assert not TargetGrant.objects.exists()


@pytest.mark.django_db
def test_the_grant_admin_refuses_a_missing_directory_a_file_a_duplicate_and_a_grant_to_no_one(
    client_for, root_user: Any, projects: Path, bob: Any
):
    """Each with one sentence; the database constraint's name is never shown."""
    admin = client_for(root_user)
    shop = write_project(projects / "shop")

    def add(**fields: Any) -> str:
        response = admin.post("/admin/runs/targetgrant/add/", fields)
        return response.content.decode() if response.status_code == 200 else ""

    assert "does not exist on this server" in add(directory=str(projects / "gone"), user=bob.pk)
    assert "does not exist on this server" in add(
        directory=str(shop / "app" / "views.py"), user=bob.pk
    )
    assert add(directory=str(shop), user=bob.pk) == "", "the first grant is saved"
    again = add(directory=f"{shop}/", user=bob.pk)
    assert f"{shop} is already granted to bob" in again
    no_one = add(directory=str(shop))
    assert no_one.count("A grant is to one user or one group.") == 1
    assert "target_grant_to_a_user_or_a_group" not in no_one and "Constraint" not in no_one
    assert TargetGrant.objects.count() == 1


@pytest.mark.django_db
def test_a_single_user_install_launches_with_no_grant_and_others_are_told_to_ask(
    refusal_at_every_launch_door, client_for, alice: Any, root_user: Any, projects: Path
):
    """No grant, no {user} root, nothing shared: the superuser and the CLI use the roots."""
    project = write_project(projects)
    response = client_for(root_user).post(
        "/launch/", {"flow": "research", "target": str(project), "origin": "button"}
    )
    assert response.status_code == 201, response.content
    call_command("launch_flow", "research", "--target", str(project))
    assert FlowRun.objects.filter(owner=None).count() == 1
    workspace = client_for(root_user).get("/workspace/").content.decode()
    assert str(projects) in workspace, "the workspace starts on the first allowed root"
    assert refusal_at_every_launch_door(alice, str(project)) == [REFUSAL] * 4
    assert str(projects) not in client_for(alice).get("/workspace/").content.decode()


@pytest.mark.django_db
def test_a_path_the_server_cannot_look_at_is_the_same_sentence_not_a_server_error(
    refusal_at_every_launch_door, alice: Any, alices_project: Path
):
    """A name too long for the file system, a loop of links: errors other than "missing"."""
    (alices_project / "loop-a").symlink_to(alices_project / "loop-b")
    (alices_project / "loop-b").symlink_to(alices_project / "loop-a")
    for target in (str(alices_project / ("x" * 300)), str(alices_project / "loop-a")):
        assert refusal_at_every_launch_door(alice, target) == [REFUSAL] * 4, target[-20:]


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_directory_was_taken_back_keeps_its_socket_closed(
    connect, run_with, bob: Any, alices_project: Path, projects: Path
):
    """The live pane streams what the agents read: once the grant is gone, no socket opens."""
    import asyncio

    lent = TargetGrant.objects.create(directory=str(projects / "alice"), user=bob)
    run = run_with(alices_project, bob)

    async def opens() -> bool:
        communicator, connected = await connect(bob, run)
        await communicator.disconnect()
        return connected

    assert asyncio.run(opens()), "while given, bob's pane opens"
    lent.delete()
    assert not asyncio.run(opens())
