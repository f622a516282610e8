"""The edges every page shares: bad bytes in a query, a 500 in the log, the
Content-Security-Policy, settings for running behind TLS, an admin that cannot delete runs,
and a cap on each user's waiting runs."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from devtools.testing import ROOT
from orchestrator_site.hardening import BAD_QUERY
from runs import services
from runs.models import AgentEvent, FlowRun, FlowStep, RunStatus

PROPERTY = hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
PAGES = ["/runs/", "/workspace/", "/runs/{id}/", "/runs/{id}/export.md", "/login/", "/admin/"]
CONTROL = st.characters(codec="utf-8", categories=["Cc"])
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=40)


# Text with at least one control character (NUL included) somewhere in it.
WITH_CONTROL = st.tuples(TEXT, CONTROL, TEXT).map("".join)


@pytest.mark.django_db
@PROPERTY
@given(
    page=st.sampled_from(PAGES),
    name=st.one_of(st.sampled_from(["q", "target", "flow", "status", "page", "embed"]), TEXT),
    value=WITH_CONTROL,
    in_name=st.booleans(),
)
@example(page="/runs/", name="q", value="\x00", in_name=False)
@example(page="/runs/", name="target", value="\x00", in_name=False)
def test_a_control_character_in_any_query_parameter_is_a_400_with_a_sentence(
    client_for, alice: Any, finished_run: FlowRun, page: str, name: str, value: str, in_name: bool
):
    key, val = (value, "x") if in_name else (name, value)
    url = f"{page.format(id=finished_run.id)}?{quote(key, safe='')}={quote(val, safe='')}"
    response = client_for(alice).get(url)
    assert response.status_code == 400, url
    assert response.content.decode() == BAD_QUERY


@pytest.mark.django_db
def test_bytes_that_are_not_utf8_in_a_query_are_a_400_too(client_for, alice: Any):
    for query in ("q=%FF", "target=%C3", "%80=1", "q=ok&status=%ED%A0%80"):
        response = client_for(alice).get(f"/runs/?{query}")
        assert (response.status_code, response.content.decode()) == (400, BAD_QUERY), query


@pytest.mark.django_db
@PROPERTY
@given(q=TEXT, target=TEXT, flow=TEXT, page=TEXT)
def test_any_printable_query_still_answers_the_history_page(
    client_for, alice: Any, finished_run: FlowRun, q: str, target: str, flow: str, page: str
):
    fields = {"q": q, "target": target, "flow": flow, "page": page}
    response = client_for(alice).get("/runs/", fields)
    assert response.status_code == 200


@pytest.mark.django_db
def test_a_server_error_is_logged_with_its_traceback(
    alice: Any, finished_run: FlowRun, monkeypatch: pytest.MonkeyPatch, caplog: Any
):
    """The error page says the error is in the server's log: the configured handler writes it."""

    def broken(run: Any) -> dict[str, Any]:
        raise RuntimeError("the pane could not be drawn (on purpose)")

    monkeypatch.setattr("runs.views.live.page_context", broken)
    [handler] = logging.getLogger("django.request").handlers
    stream = io.StringIO()
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        client = Client(raise_request_exception=False)
        client.force_login(alice)
        with caplog.at_level(logging.ERROR, logger="django.request"):
            response = client.get(f"/runs/{finished_run.id}/")
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    assert response.status_code == 500
    assert "server's log" in response.content.decode()
    logged = stream.getvalue()
    assert "Internal Server Error" in logged and "Traceback (most recent call last)" in logged
    assert "RuntimeError: the pane could not be drawn (on purpose)" in logged
    assert any(record.exc_info for record in caplog.records)


def policy(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (part.split() for part in header.split(";") if part.strip())
    }


@pytest.mark.django_db
def test_every_page_carries_the_content_security_policy_with_no_inline_scripts(
    client_for, alice: Any, finished_run: FlowRun, django_user_model: Any
):
    root = django_user_model.objects.create_superuser("root", password="root-pass-123")
    pages = {
        alice: [
            "/workspace/",
            "/runs/",
            f"/runs/{finished_run.id}/",
            f"/runs/{finished_run.id}/?embed=1",
            f"/runs/{finished_run.id}/export.json",
            "/runs/00000000-0000-0000-0000-000000000000/",  # the 404 page
            "/runs/?q=%00",  # the 400 sentence
        ],
        root: ["/admin/", "/admin/runs/flowrun/", f"/admin/runs/flowrun/{finished_run.id}/change/"],
    }
    checked = 0
    for user, urls in pages.items():
        for url in urls:
            response = client_for(user).get(url)
            assert response.status_code in {200, 400, 404}, url
            rules = policy(response)
            assert "'unsafe-inline'" not in rules["script-src"], url
            assert "'self'" in rules["script-src"] and rules["object-src"] == ["'none'"], url
            nonces = {v for v in rules["script-src"] if v.startswith("'nonce-")}
            body = response.content.decode() if "html" in response["Content-Type"] else ""
            for tag in re.findall(r"<script\b[^>]*>", body):
                executable = "application/json" not in tag
                assert not executable or "src=" in tag or nonces, (url, tag)
                if "nonce=" in tag:
                    assert (
                        re.search(r'nonce="([^"]+)"', tag)[1]
                        in {  # type: ignore[index]
                            n[len("'nonce-") : -1] for n in nonces
                        }
                    ), (url, tag)
            # no inline handlers: an on...= or hx-on attribute inside any tag (escaped text,
            # such as the run's "<img onerror>" focus, is not a tag)
            assert not re.search(r"<[a-zA-Z][^<>]*\s(on[a-z]+|hx-on[-:a-z]*)\s*=", body), url
            checked += 1
    login = Client().get("/login/")
    assert "Content-Security-Policy" in login
    print(f"csp: {checked + 1} pages carry the policy")


def settings_in_a_new_process(**env: str) -> subprocess.CompletedProcess[str]:
    """Settings are read once, at start: a fresh interpreter reads them as a server would."""
    code = (
        "import json, orchestrator_site.settings as s; print(json.dumps([s.SESSION_COOKIE_SECURE,"
        " s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER,"
        " [str(p) for p in s.ORCHESTRATOR_ALLOWED_ROOTS], s.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_for_tls_are_read_from_the_environment_and_bad_ones_name_their_variable():
    good = settings_in_a_new_process(
        SECURE_COOKIES="true",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https",
        ORCHESTRATOR_ALLOWED_ROOTS="/srv/projects/{user}:/srv/shared",
        ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER="5",
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout) == [
        True,
        True,
        31536000,
        ["HTTP_X_FORWARDED_PROTO", "https"],
        ["/srv/projects/{user}", "/srv/shared"],
        5,
    ]
    for name, value in [
        ("SECURE_COOKIES", "maybe"),
        ("SECURE_HSTS_SECONDS", "a year"),
        ("SECURE_PROXY_SSL_HEADER", "https"),
        ("ORCHESTRATOR_ALLOWED_ROOTS", "/srv/{user}-projects"),
        ("ORCHESTRATOR_ALLOWED_ROOTS", "/srv/{user}/{user}"),
        ("ORCHESTRATOR_SHARED_ROOTS", "/srv/{user}"),
        ("ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER", "-1"),
    ]:
        bad = settings_in_a_new_process(**{name: value})
        assert bad.returncode != 0, (name, value)
        assert "ImproperlyConfigured" in bad.stderr and name in bad.stderr.splitlines()[-1]


@pytest.mark.django_db
def test_behind_a_tls_proxy_the_cookies_are_secure_and_hsts_is_sent(settings: Any, alice: Any):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    page = client.get("/login/")
    assert page["Strict-Transport-Security"] == "max-age=3600"
    assert page.cookies["csrftoken"]["secure"] is True
    token = page.cookies["csrftoken"].value
    logged_in = client.post(
        "/login/", {"username": "alice", "password": "alice-pass-123", "csrfmiddlewaretoken": token}
    )
    assert logged_in.status_code == 302 and logged_in.cookies["sessionid"]["secure"] is True
    assert "Strict-Transport-Security" not in Client().get("/login/"), "not on plain HTTP"


@pytest.mark.django_db
def test_the_admin_offers_no_way_to_delete_runs_or_what_hangs_off_them(
    client_for, finished_run: FlowRun, django_user_model: Any
):
    root = client_for(django_user_model.objects.create_superuser("root", password="r-pass-1"))
    listing = root.get("/admin/runs/flowrun/").content.decode()
    assert 'value="delete_selected"' not in listing and 'value="cancel_runs"' in listing
    step = finished_run.steps.first()
    event = AgentEvent.objects.first()
    assert step is not None and event is not None
    for model, pk in (
        ("flowrun", finished_run.pk),
        ("flowstep", step.pk),
        ("agentevent", event.pk),
    ):
        assert root.get(f"/admin/runs/{model}/{pk}/delete/").status_code == 403, model
        assert root.post(f"/admin/runs/{model}/{pk}/delete/", {"post": "yes"}).status_code == 403
        page = root.get(f"/admin/runs/{model}/{pk}/change/").content.decode()
        assert "deletelink" not in page, model
    root.post(
        "/admin/runs/flowrun/", {"action": "delete_selected", "_selected_action": [finished_run.pk]}
    )
    assert FlowRun.objects.filter(pk=finished_run.pk).exists()
    assert FlowStep.objects.filter(run=finished_run).count() == finished_run.steps.count() > 0


@pytest.mark.django_db
def test_a_users_waiting_runs_are_capped_at_every_door_with_a_sentence(
    client_for, finish_run, settings: Any, alice: Any, bob: Any, target_dir: Path
):
    settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 2
    for _ in range(2):
        services.launch_run(flow="research", target=str(target_dir), owner=alice)
    sentence = "You already have 2 runs waiting to start (at most 2)"
    response = client_for(alice).post(
        "/launch/", {"flow": "research", "target": str(target_dir), "origin": "slash"}
    )
    assert response.status_code == 400 and sentence in json.loads(response.content)["error"]
    with pytest.raises(CommandError, match=re.escape(sentence)):
        call_command("launch_flow", "research", "--target", str(target_dir), "--user", "alice")
    # A retry puts a finished run back among the waiting ones: the same cap, the same sentence.

    finished = services.launch_run(flow="code-review", target=str(target_dir), owner=bob)
    finished = finish_run(finished, report="## Findings\n", fail="security")
    finished.owner = alice
    finished.save(update_fields=["owner"])
    retry = client_for(alice).post(f"/runs/{finished.id}/steps/security/retry/")
    assert retry.status_code == 409 and sentence in retry.content.decode()
    assert FlowRun.objects.filter(owner=alice, status=RunStatus.PENDING).count() == 2
    # Others are not held up by alice's queue, and the CLI's operator is not capped.
    assert services.launch_run(flow="research", target=str(target_dir), owner=bob).owner == bob
    call_command("launch_flow", "research", "--target", str(target_dir))
    FlowRun.objects.filter(owner=alice, status=RunStatus.PENDING).update(status=RunStatus.CANCELLED)
    assert client_for(alice).post(f"/runs/{finished.id}/steps/security/retry/").status_code == 204


@pytest.mark.django_db
def test_the_panes_retry_of_a_step_the_run_does_not_have_is_a_404_naming_it(
    client_for, finished_run: Any, alice: Any, bob: Any
):
    """As the API answers: the owner learns there is no such step; another user learns
    nothing, the same 404 as for a run that does not exist."""
    mine = client_for(alice).post(f"/runs/{finished_run.id}/steps/nope/retry/")
    assert mine.status_code == 404
    assert mine.content.decode() == "This run has no step 'nope'."
    assert mine["Content-Type"].startswith("text/plain")
    theirs = client_for(bob).post(f"/runs/{finished_run.id}/steps/nope/retry/")
    missing = client_for(bob).post(f"/runs/{uuid.uuid4()}/steps/nope/retry/")
    assert theirs.status_code == missing.status_code == 404
    assert b"has no step" not in theirs.content and b"has no step" not in missing.content
