"""Who may see and touch a run, over every door: each endpoint x {owner, outsider, anonymous},
CSRF on every state-changing POST, and the WebSocket's owner, origin and step checks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from orchestrator_site.asgi import application
from runs.models import FlowRun
from runs.services import launch_run

GETS = ["/runs/{id}/", "/runs/{id}/?embed=1", "/runs/{id}/export.md", "/runs/{id}/export.json"]
POSTS = ["/runs/{id}/cancel/", "/runs/{id}/steps/security/retry/", "/runs/{id}/send-to-chat/"]
ADMIN = ["/admin/", "/admin/runs/flowrun/", "/admin/runs/flowrun/{id}/change/"]


def urls(templates: list[str], run: FlowRun) -> list[str]:
    return [t.format(id=run.id) for t in templates]


@pytest.mark.django_db
def test_an_outsider_gets_404_on_every_run_url_and_never_sees_it_listed(
    client_for, alice: Any, bob: Any, finished_run: FlowRun
):
    client = client_for(bob)
    checked = 0
    for url in urls(GETS, finished_run):
        assert client.get(url).status_code == 404, url
        checked += 1
    for url in urls(POSTS, finished_run):
        assert client.post(url).status_code == 404, url
        checked += 1
    mine = client_for(alice).get("/runs/").content.decode()
    assert f'href="/runs/{finished_run.id}/"' in mine, "the owner's history lists it"
    for query in ("", f"?q={finished_run.id}", "?q=auth", "?flow=code-review"):
        listed = client.get(f"/runs/{query}").content.decode()
        assert f'href="/runs/{finished_run.id}/"' not in listed, query
        checked += 1
    for url in urls(ADMIN, finished_run):  # not staff: the admin's own login, nothing shown
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
        checked += 1
    finished_run.refresh_from_db()
    assert finished_run.status == "succeeded", "nothing the outsider posted changed the run"
    print(f"outsider: {checked} requests, all refused")


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in_everywhere(client: Client, finished_run: FlowRun):
    checked = 0
    for url in ["/", "/workspace/", "/runs/", *urls(GETS, finished_run)]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
        checked += 1
    for url in ["/launch/", *urls(POSTS, finished_run)]:
        response = client.post(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
        checked += 1
    print(f"anonymous: {checked} requests, all sent to the login page")


@pytest.mark.django_db
def test_every_state_changing_post_needs_the_csrf_token(
    alice: Any, finished_run: FlowRun, target_dir: Path
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    posts = [*urls(POSTS, finished_run), "/launch/", "/logout/"]
    for url in posts:
        data = {"flow": "research", "target": str(target_dir)} if url == "/launch/" else {}
        assert client.post(url, data).status_code == 403, url
    assert FlowRun.objects.count() == 1, "no run launched without the token"
    assert client.get("/runs/").status_code == 200, "still logged in: logout was refused too"
    print(f"csrf: {len(posts)} POST endpoints refuse a request without the token")


@pytest.mark.django_db(transaction=True)
def test_the_socket_refuses_strangers_foreign_pages_and_steps_of_other_runs(
    connect, alice: Any, bob: Any, finished_run: FlowRun, target_dir: Path
):
    theirs = launch_run(flow="research", target=str(target_dir), owner=bob)
    foreign_step = theirs.steps.first()
    assert foreign_step is not None

    async def open_socket(origin: bytes | None, cookie: str = "") -> bool:
        headers = [(b"host", b"127.0.0.1")]
        if origin is not None:
            headers.append((b"origin", origin))
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        ws = WebsocketCommunicator(application, f"/ws/runs/{finished_run.id}/", headers=headers)
        connected, _ = await ws.connect()
        await ws.disconnect()
        return connected

    async def scenario() -> dict[str, Any]:
        outsider, outsider_ok = await connect(bob, finished_run)
        await outsider.disconnect()
        owner, owner_ok = await connect(alice, finished_run)
        await owner.receive_from(timeout=5)  # the snapshot
        await owner.send_json_to({"type": "subscribe", "step": foreign_step.id, "after": 0})
        answer = await owner.receive_from(timeout=5)  # a refusal, never the foreign stream
        leaked = 'id="socket-notice"' not in answer or f"stream-{foreign_step.id}" in answer
        await owner.send_to(text_data="not json")
        await owner.send_json_to(["not", "an", "object"])
        refusals = [await owner.receive_from(timeout=5) for _ in range(2)]
        still_open = all('id="socket-notice"' in refusal for refusal in refusals)
        still_open = still_open and await owner.receive_nothing(timeout=0.3)
        await owner.disconnect()
        return {
            "anonymous": await open_socket(b"http://127.0.0.1"),
            "foreign origin": await open_socket(b"http://evil.example"),
            "no origin": await open_socket(None),
            "outsider": outsider_ok,
            "owner": owner_ok,
            "leaked foreign step": leaked,
            "survived garbage": still_open,
        }

    result = asyncio.run(scenario())
    assert result == {
        "anonymous": False,
        "foreign origin": False,
        "no origin": False,
        "outsider": False,
        "owner": True,
        "leaked foreign step": False,
        "survived garbage": True,
    }
    print(f"socket: {len(result)} cases as expected")
