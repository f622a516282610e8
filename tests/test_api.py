"""The launch API for host apps: bearer tokens, the owner's runs only, JSON sentences."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.registry import slash_menu
from runs.api_tokens import create_token
from runs.models import ApiToken, FlowRun, Origin, RunStatus, StepStatus

pytestmark = pytest.mark.django_db


def call(client: Client, method: str, path: str, token: str | None, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs.update(data=body if isinstance(body, str) else json.dumps(body))
        kwargs["content_type"] = "application/json"
    return getattr(client, method)(path, **kwargs)


@pytest.fixture
def api(client: Client) -> Client:
    """A client with CSRF checks on, as a host app's requests would meet them."""
    return Client(enforce_csrf_checks=True)


def test_a_launch_creates_the_run_for_the_tokens_owner_with_origin_api(
    api: Client, alice, alice_token: str, target_dir: Path
):
    """POST /api/v1/runs without any CSRF token launches; the run is alice's, from the API."""
    response = call(
        api,
        "post",
        "/api/v1/runs",
        alice_token,
        {"flow": "code-review", "target": str(target_dir), "band": "medium", "focus": "auth"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    run = FlowRun.objects.get(id=body["id"])
    assert (run.owner, run.origin, run.band, run.focus) == (alice, Origin.API, "medium", "auth")
    assert body["pane_url"] == f"/runs/{run.id}/"
    assert body["events_url"] == f"/api/v1/runs/{run.id}/events"


def test_the_status_shows_the_run_and_each_agent(api: Client, alice_token: str, target_dir: Path):
    launched = call(
        api, "post", "/api/v1/runs", alice_token, {"flow": "code-review", "target": str(target_dir)}
    ).json()
    state = call(api, "get", f"/api/v1/runs/{launched['id']}", alice_token).json()
    assert state["status"] == RunStatus.PENDING
    assert state["status_label"] == "pending"
    assert [a["key"] for a in state["agents"]] == [
        "correctness",
        "security",
        "synthesis",
        "validation",
    ]
    assert state["agents"][0]["state"] == "waiting (for a worker)"
    assert state["report_ready"] is False


def test_the_report_reads_as_markdown_and_as_the_json_export(
    api: Client, finished_run, alice_token: str
):
    """The same text and document as the pane's exports."""
    from runs import exports

    markdown = call(api, "get", f"/api/v1/runs/{finished_run.id}/report", alice_token)
    assert markdown.status_code == 200
    assert markdown["Content-Type"].startswith("text/markdown")
    assert markdown.content.decode() == exports.report_markdown(finished_run)
    document = call(api, "get", f"/api/v1/runs/{finished_run.id}/report.json", alice_token)
    assert document.json() == json.loads(json.dumps(exports.run_as_json(finished_run)))


def test_a_report_not_written_yet_is_a_409_with_a_sentence(
    api: Client, alice_token: str, target_dir: Path
):
    launched = call(
        api, "post", "/api/v1/runs", alice_token, {"flow": "research", "target": str(target_dir)}
    ).json()
    response = call(api, "get", f"/api/v1/runs/{launched['id']}/report", alice_token)
    assert response.status_code == 409
    assert response.json() == {"error": "there is no report yet; the run is still going"}


def test_cancel_stops_the_run_and_a_second_cancel_says_it_already_ended(
    api: Client, alice_token: str, target_dir: Path
):
    launched = call(
        api, "post", "/api/v1/runs", alice_token, {"flow": "code-review", "target": str(target_dir)}
    ).json()
    first = call(api, "post", f"/api/v1/runs/{launched['id']}/cancel", alice_token)
    assert first.status_code == 200
    assert first.json()["status"] == RunStatus.CANCELLED
    again = call(api, "post", f"/api/v1/runs/{launched['id']}/cancel", alice_token)
    assert again.status_code == 409
    assert again.json() == {"error": "the run has already ended (cancelled)"}


def test_retry_reruns_a_failed_step_and_refuses_one_that_cannot_be(
    api: Client, alice, alice_token: str, target_dir: Path
):
    from devtools.testing import finish_step
    from runs.engine.queue import scheduler
    from runs.services import launch_run

    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    claimed = scheduler.claim_steps("w", 10, run_id=run.id)
    for step_id in claimed:
        finish_step(step_id, "w", succeeded=False, error="boom")
    failed = run.steps.filter(status=StepStatus.FAILED).first()
    assert failed is not None
    response = call(api, "post", f"/api/v1/runs/{run.id}/steps/{failed.key}/retry", alice_token)
    assert response.status_code == 200, response.content
    retried = {a["key"]: a["status"] for a in response.json()["agents"]}
    assert retried[failed.key] == StepStatus.READY
    again = call(api, "post", f"/api/v1/runs/{run.id}/steps/{failed.key}/retry", alice_token)
    assert again.status_code == 409
    assert again.json() == {"error": f"step {failed.key!r} cannot be retried now"}
    unknown = call(api, "post", f"/api/v1/runs/{run.id}/steps/nope/retry", alice_token)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "this run has no step 'nope'"}


def test_the_flows_list_their_bands_agents_and_slash_menu_place(api: Client, alice_token: str):
    flows = call(api, "get", "/api/v1/flows", alice_token).json()
    by_slug = {f["slug"]: f for f in flows}
    assert len(flows) == 22
    assert {f["slug"] for f in flows if f["in_slash_menu"]} == {f.slug for f in slash_menu()}
    assert len([f for f in flows if f["in_slash_menu"]]) == 11
    review = by_slug["code-review"]["bands"]
    assert [a["key"] for a in review["small"]] == [
        "correctness",
        "security",
        "synthesis",
        "validation",
    ]
    assert len(review["small"]) < len(review["medium"]) < len(review["large"])


def test_another_users_run_is_a_404_like_a_run_that_does_not_exist(
    api: Client, finished_run, bob_token: str
):
    """bob's token cannot see, read, cancel or retry alice's run, nor learn it exists."""
    missing = "00000000-0000-4000-8000-000000000000"
    for path, method in [
        ("/api/v1/runs/{}", "get"),
        ("/api/v1/runs/{}/report", "get"),
        ("/api/v1/runs/{}/report.json", "get"),
        ("/api/v1/runs/{}/cancel", "post"),
        ("/api/v1/runs/{}/steps/security/retry", "post"),
        ("/api/v1/runs/{}/steps/nope/retry", "post"),
        ("/api/v1/runs/{}/events", "get"),
    ]:
        theirs = call(api, method, path.format(finished_run.id), bob_token)
        nothing = call(api, method, path.format(missing), bob_token)
        assert theirs.status_code == nothing.status_code == 404, path
        assert theirs.json() == nothing.json() == {"error": "no such run"}, path


def test_a_superusers_token_still_sees_only_its_own_runs(
    api: Client, finished_run, django_user_model
):
    root = django_user_model.objects.create_superuser("root", password="root-pass-123")
    token = create_token(root)[1]
    assert call(api, "get", f"/api/v1/runs/{finished_run.id}", token).status_code == 404


def test_a_revoked_or_unknown_token_is_a_401_with_a_sentence(api: Client, alice, alice_token: str):
    assert call(api, "get", "/api/v1/flows", alice_token).status_code == 200
    prefix = ApiToken.objects.get(owner=alice).prefix
    call_command("api_token", "revoke", "--user", "alice", "--prefix", prefix)
    for token in (alice_token, "orc_00000000_unknown", None):
        response = call(api, "get", "/api/v1/flows", token)
        assert response.status_code == 401
        assert response.json() == {
            "error": "a valid API token is required (Authorization: Bearer <token>)"
        }


def test_a_signed_in_browser_launches_only_with_the_csrf_token(
    api: Client, alice, target_dir: Path
):
    """The site's own pages call the API with the session, under Django's CSRF check: a
    cross-site form cannot launch with the cookie alone."""
    api.force_login(alice)
    assert call(api, "get", "/api/v1/flows", None).status_code == 200
    body = {"flow": "code-review", "target": str(target_dir), "origin": "slash"}
    refused = call(api, "post", "/api/v1/runs", None, body)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "a signed-in browser must send the page's CSRF token (X-CSRFToken)"
    }
    assert not FlowRun.objects.exists()
    api.get("/workspace/")  # the page sets the CSRF cookie its script reads the token from
    headers = {"X-CSRFToken": api.cookies["csrftoken"].value}
    launched = api.post(
        "/api/v1/runs",
        data=json.dumps({**body, "host_pane": "coder"}),
        content_type="application/json",
        headers=headers,
    )
    assert launched.status_code == 201, launched.content
    run = FlowRun.objects.get()
    assert (run.owner, run.origin, run.host_pane) == (alice, Origin.SLASH, "coder")


def test_a_request_with_a_bad_token_is_refused_even_with_a_session(api: Client, alice):
    """A token, once sent, is the request's only credential: the cookie beside it is not."""
    api.force_login(alice)
    assert call(api, "get", "/api/v1/flows", "orc_00000000_unknown").status_code == 401


def test_a_host_cannot_claim_a_door_the_api_does_not_have(
    api: Client, alice_token: str, target_dir: Path
):
    body = {"flow": "code-review", "target": str(target_dir), "origin": "cli"}
    response = call(api, "post", "/api/v1/runs", alice_token, body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("origin: Input should be 'api', 'slash' or")
    assert not FlowRun.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"flow": "nope", "target": "."},
            "unknown flow 'nope'; valid flows: api-design, architectural-analysis",
        ),
        ({"flow": "research", "band": "huge"}, "unknown band 'huge'; valid bands: small, medium"),
        ({"flow": "research", "target": "/definitely/not/here"}, "does not exist"),
        ({"flow": "research", "focus": "x" * 5000}, "the focus text is too long"),
        ({"flow": "research", "band": 3}, "band: Input should be a valid string"),
        ({"target": "/"}, "flow: Field required"),
        ("{not json", "the request body is not valid JSON"),
        ([1, 2], "flow: Field required"),
    ],
)
def test_bad_input_is_a_400_with_the_launch_forms_sentence(
    api: Client, alice_token: str, target_dir: Path, body: Any, message: str
):
    """The sentences are the launch form's own (runs.services), or name the bad field."""
    if isinstance(body, dict) and "target" not in body:
        body = {**body, "target": str(target_dir)}
    response = call(api, "post", "/api/v1/runs", alice_token, body)
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]
    assert FlowRun.objects.count() == 0


def test_the_same_sentence_comes_from_the_launch_form(
    client: Client, alice, alice_token: str, target_dir: Path
):
    """One owner of the launch rules: form and API say the very same thing."""
    client.force_login(alice)
    form = client.post("/launch/", {"flow": "research", "target": str(target_dir), "band": "xl"})
    api_answer = call(
        Client(),
        "post",
        "/api/v1/runs",
        alice_token,
        {"flow": "research", "target": str(target_dir), "band": "xl"},
    )
    assert form.status_code == api_answer.status_code == 400
    assert form.json() == api_answer.json()


def test_unknown_paths_and_bad_ids_answer_in_json(api: Client, alice_token: str):
    nowhere = call(api, "get", "/api/v1/nowhere", alice_token)
    assert nowhere.status_code == 404
    assert nowhere.json() == {"error": "no API endpoint at /api/v1/nowhere"}


def test_the_openapi_schema_and_docs_are_served(api: Client):
    schema = api.get("/api/v1/openapi.json").json()
    assert schema["info"]["version"] == "1"
    assert "/api/v1/runs" in schema["paths"]
    docs = api.get("/api/v1/docs")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn." not in page, "the docs page loads nothing from a CDN"


def test_the_owners_active_run_cap_holds_for_api_launches(
    api: Client, settings, alice_token: str, target_dir: Path
):
    """Beyond the cap a run is accepted and waits, and its status says why."""
    from runs.engine.queue import scheduler

    settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 1
    body = {"flow": "research", "target": str(target_dir)}
    first = call(api, "post", "/api/v1/runs", alice_token, body).json()
    second = call(api, "post", "/api/v1/runs", alice_token, body).json()
    scheduler.claim_steps("w", 10)
    assert FlowRun.objects.get(id=first["id"]).status == RunStatus.RUNNING
    waiting = call(api, "get", f"/api/v1/runs/{second['id']}", alice_token).json()
    assert waiting["status"] == RunStatus.PENDING
    assert waiting["waiting"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.dictionaries(
            st.sampled_from(["flow", "target", "band", "fast", "focus", "other"]),
            st.one_of(
                st.text(max_size=50),
                st.integers(),
                st.booleans(),
                st.none(),
                st.lists(st.integers(), max_size=2),
            ),
        ),
        st.text(max_size=30),
    )
)
def test_no_launch_body_gets_a_500(alice_token: str, body: Any):
    """Whatever a host sends, the answer is JSON: a run, or an error sentence."""
    payload = body if isinstance(body, str) else json.dumps(body)
    response = call(Client(), "post", "/api/v1/runs", alice_token, payload)
    assert response.status_code in (201, 400), response.content
    answer = response.json()
    assert "id" in answer if response.status_code == 201 else isinstance(answer["error"], str)


def test_the_cli_creates_lists_and_revokes_tokens_storing_only_a_hash(alice, capsys):
    call_command("api_token", "create", "--user", "alice", "--name", "boochat")
    raw = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(owner=alice)
    assert raw.startswith(token.prefix)
    assert raw not in {token.digest, token.prefix, token.name}
    call_command("api_token", "list", "--user", "alice")
    listed = capsys.readouterr().out
    assert token.prefix in listed and "active" in listed and raw not in listed
    call_command("api_token", "revoke", "--user", "alice", "--prefix", token.prefix)
    token.refresh_from_db()
    assert token.revoked_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_events_stream_status_then_the_report_then_the_end(finished_run, alice_token: str):
    """A finished run's stream says its state, that the report is ready, and ends."""
    from django.test import AsyncClient

    async def read() -> str:
        response = await AsyncClient().get(
            f"/api/v1/runs/{finished_run.id}/events",
            headers={"Authorization": f"Bearer {alice_token}"},
        )
        assert response["Content-Type"] == "text/event-stream"
        return b"".join([chunk async for chunk in response.streaming_content]).decode()

    text = asyncio.run(read())
    kinds = [
        line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event:")
    ]
    assert kinds == ["status", "report", "end"]
    assert f'"status": "{finished_run.status}"' in text


def test_the_admin_shows_a_new_token_once_and_keeps_only_its_hash(
    client: Client, alice, django_user_model
):
    root = django_user_model.objects.create_superuser("root", password="root-pass-123")
    client.force_login(root)
    response = client.post(
        "/admin/runs/apitoken/add/", {"owner": alice.pk, "name": "coder"}, follow=True
    )
    token = ApiToken.objects.get(owner=alice)
    shown = [str(m) for m in response.context["messages"]]
    [raw] = [word for m in shown for word in m.split() if word.startswith(token.prefix)]
    assert token.digest != raw and len(token.digest) == 64
    assert call(Client(), "get", "/api/v1/flows", raw).status_code == 200
    page = client.get(f"/admin/runs/apitoken/{token.pk}/change/").content.decode()
    assert raw not in page
    client.post(
        "/admin/runs/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    assert call(Client(), "get", "/api/v1/flows", raw).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_events_stream_follows_a_live_run_until_it_ends(
    alice, alice_token: str, target_dir: Path
):
    """A pending run's stream says so, then sends its change to cancelled, then ends."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    from runs.services import cancel_run, launch_run

    run = launch_run(flow="research", target=str(target_dir), owner=alice)

    async def read() -> list[dict[str, Any]]:
        response = await AsyncClient().get(
            f"/api/v1/runs/{run.id}/events", headers={"Authorization": f"Bearer {alice_token}"}
        )
        events: list[dict[str, Any]] = []
        async for chunk in response.streaming_content:
            kind, data = chunk.decode().strip().split("\n")
            events.append({"event": kind.removeprefix("event: "), **json.loads(data[6:])})
            if len(events) == 1:
                await sync_to_async(cancel_run)(run.id)
        return events

    events = asyncio.run(read())
    assert [(e["event"], e.get("status")) for e in events if e["event"] != "report"] == [
        ("status", RunStatus.PENDING),
        ("status", RunStatus.CANCELLED),
        ("end", RunStatus.CANCELLED),
    ]


def test_a_method_a_route_does_not_take_is_a_json_405_naming_the_one_it_does(
    api: Client, alice_token: str, finished_run
):
    """Errors are always JSON with a sentence, also before the route's own code runs."""
    for method, path, allowed in (
        ("get", "/api/v1/runs", "POST"),
        ("post", "/api/v1/flows", "GET"),
        ("delete", f"/api/v1/runs/{finished_run.id}", "GET"),
        ("get", f"/api/v1/runs/{finished_run.id}/cancel", "POST"),
        ("post", f"/api/v1/runs/{finished_run.id}/events", "GET"),
    ):
        response = call(api, method, path, alice_token)
        assert response.status_code == 405, path
        assert response["Content-Type"] == "application/json", path
        assert response.json() == {
            "error": f"{method.upper()} is not allowed here; use {allowed}"
        }, path


def test_a_malformed_run_id_is_no_such_run(api: Client, alice_token: str):
    for path in ("/api/v1/runs/not-a-uuid", "/api/v1/runs/12/report", "/api/v1/runs/x/cancel"):
        method = "post" if path.endswith("cancel") else "get"
        response = call(api, method, path, alice_token)
        assert (response.status_code, response.json()) == (404, {"error": "no such run"}), path


def test_a_hosts_slash_menu_may_launch_only_the_slash_menus_flows(
    api: Client, alice_token: str, target_dir: Path
):
    body = {"flow": "runbook", "target": str(target_dir), "origin": "slash"}
    refused = call(api, "post", "/api/v1/runs", alice_token, body)
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("'runbook' is not a slash command; type / for one of")
    launched = call(api, "post", "/api/v1/runs", alice_token, {**body, "origin": "button"})
    assert launched.status_code == 201
