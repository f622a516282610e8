"""The launch API for host apps, version 1 (`/api/v1/`; OpenAPI at `/api/v1/openapi.json`,
docs at `/api/v1/docs`).

Every request carries `Authorization: Bearer <token>` (runs.api_tokens) and acts for that
token's owner: no session, so no CSRF. The site's own pages (the workspace) call it with the
signed-in session instead, and then Django's CSRF check applies. Either way only the owner's
runs are visible, and another person's run is the same 404 as one that does not exist.
Launch, cancel and retry go through runs.services, so the launch form's checks and
sentences, and the per-user limits, are the same here. Every error is JSON with a
sentence: `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Literal
from uuid import UUID

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import URLPattern
from ninja import NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from runs import api_tokens, doors, exports, services
from runs.models import FlowRun
from runs.permissions import token_runs

log = logging.getLogger(__name__)


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return api_tokens.user_for(token)


class SameOriginSession(APIKeyCookie):
    """The signed-in browser on this site's own pages (the workspace launches through the API
    it offers hosts, so it proves that contract): the session cookie plus Django's CSRF check,
    exactly as a form post. A request that carries a token is the token's alone."""

    param_name = "sessionid"

    def _get_key(self, request: HttpRequest) -> str | None:
        if "Authorization" in request.headers or not request.user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise HttpError(403, CSRF_NEEDED)
        return "session"

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return request.user if key else None


CSRF_NEEDED = "a signed-in browser must send the page's CSRF token (X-CSRFToken)"

api = NinjaAPI(
    title="Orchestrator launch API",
    version="1",
    description="Launch flows, follow their runs and read their reports from a host app.",
    auth=[BearerToken(), SameOriginSession()],
    urls_namespace="api-v1",
)


class LaunchIn(Schema):
    # Types only: what a flow, band, target or focus may be is runs.services' rule.
    flow: str
    target: str
    band: str = "small"
    fast: bool = False
    focus: str = ""
    web: bool = False
    # Which of the host's doors and panes launched it (a host's slash menu, its launcher
    # button; its chat or coder pane), recorded with the run as the workspace's are.
    origin: Literal["api", "slash", "button"] = "api"
    host_pane: Literal["chat", "coder", "none"] = "none"


class LaunchOut(Schema):
    id: UUID
    status: str
    pane_url: str
    status_url: str
    events_url: str


class ErrorOut(Schema):
    error: str


def _run(request: HttpRequest, run_id: UUID) -> FlowRun:
    return get_object_or_404(token_runs(request.auth), id=run_id)  # type: ignore[attr-defined]


def _readable_run(request: HttpRequest, run_id: UUID) -> FlowRun:
    """A run whose report text leaves the server: its directory must still be one the
    token's owner may use (runs.targets), else a 403 with the pane's sentence."""
    run = _run(request, run_id)
    refused = doors.withheld(request.auth, run)  # type: ignore[attr-defined]
    if refused:
        raise HttpError(403, refused)
    return run


@api.get("/flows", response=list[dict[str, Any]], summary="The flows, their bands and agents")
def flows(request: HttpRequest) -> list[dict[str, Any]]:
    """Each flow with what each band runs and whether it belongs in a slash menu."""
    return doors.flow_catalog()


@api.post("/runs", response={201: LaunchOut, 400: ErrorOut}, summary="Launch a run")
def launch(request: HttpRequest, body: LaunchIn) -> Status[dict[str, Any]]:
    try:
        run = services.launch_run(
            flow=body.flow.strip(),
            target=body.target,
            band=body.band or "small",
            fast=body.fast,
            focus=body.focus,
            owner=request.auth,  # type: ignore[attr-defined]
            origin=body.origin,
            host_pane=body.host_pane,
            web=body.web,
        )
    except services.LaunchError as exc:
        return Status(400, {"error": str(exc)})
    return Status(
        201,
        {
            "id": run.id,
            "status": run.status,
            "pane_url": run.get_absolute_url(),
            "status_url": f"/api/v1/runs/{run.id}",
            "events_url": f"/api/v1/runs/{run.id}/events",
        },
    )


@api.get("/runs/{run_id}", response=dict[str, Any], summary="A run's status and agents")
def status(request: HttpRequest, run_id: UUID) -> dict[str, Any]:
    return doors.run_state(_run(request, run_id), request.auth)  # type: ignore[attr-defined]


@api.get("/runs/{run_id}/report", summary="A run's report as Markdown")
def report_markdown(request: HttpRequest, run_id: UUID) -> HttpResponse:
    run = _readable_run(request, run_id)
    if not run.report:
        raise HttpError(409, "there is no report yet; the run is still going")
    return HttpResponse(exports.report_markdown(run), content_type="text/markdown; charset=utf-8")


@api.get("/runs/{run_id}/report.json", response=dict[str, Any], summary="A run as JSON")
def report_json(request: HttpRequest, run_id: UUID) -> dict[str, Any]:
    """The same document as the pane's JSON export."""
    return exports.run_as_json(_readable_run(request, run_id))


@api.post("/runs/{run_id}/cancel", response={200: dict[str, Any], 409: ErrorOut})
def cancel(request: HttpRequest, run_id: UUID) -> Status[dict[str, Any]]:
    run = _run(request, run_id)
    if not services.cancel_run(run.id):
        return Status(409, {"error": f"the run has already ended ({run.status})"})
    run.refresh_from_db()
    return Status(200, doors.run_state(run, request.auth))  # type: ignore[attr-defined]


@api.post(
    "/runs/{run_id}/steps/{key}/retry",
    response={200: dict[str, Any], 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
)
def retry(request: HttpRequest, run_id: UUID, key: str) -> Status[dict[str, Any]]:
    run = _run(request, run_id)  # another user's run: "no such run", before any step is named
    if not run.steps.filter(key=key).exists():
        return Status(404, {"error": f"this run has no step {key!r}"})
    try:
        retried = services.retry_step(run.id, key, user=request.auth)  # type: ignore[attr-defined]
    except services.RunRefused as refused:  # the directory was taken back: not a "not now"
        return Status(403, {"error": str(refused)})
    except services.LaunchError as refused:
        return Status(409, {"error": str(refused)})
    if not retried:
        return Status(409, {"error": f"step {key!r} cannot be retried now"})
    run.refresh_from_db()
    return Status(200, doors.run_state(run, request.auth))  # type: ignore[attr-defined]


def _error(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return api.create_response(request, {"error": message}, status=status)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """400 with a sentence naming each bad field, not ninja's 422 list. A path that is not a
    run id names no run: the same 404 as any run this token cannot see."""
    if any(tuple(error.get("loc", ()))[:1] == ("path",) for error in exc.errors):
        return _error(request, "no such run", 404)
    return _error(request, _sentence(exc.errors), 400)


@api.exception_handler(AuthenticationError)
def _unauthorised(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _error(request, "a valid API token is required (Authorization: Bearer <token>)", 401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    message = str(exc)
    if message == "Cannot parse request body":
        message = "the request body is not valid JSON"
    return _error(request, message, exc.status_code)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, "no such run", 404)


@api.exception_handler(Exception)
def _crashed(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("API request failed: %s %s", request.method, request.path)
    return _error(request, "the server failed to answer this request; it has been logged", 500)


def _sentence(errors: list[dict[str, Any]]) -> str:
    """`body.band: Input should be a valid string` for each error, joined into one line."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'the request'}: {error.get('msg', 'is not valid')}")
    return "; ".join(parts) or "the request is not valid"


def urls() -> tuple[list[Any], str, str]:
    """The API's URL patterns, each answering a method it does not take with a JSON 405
    (ninja answers those with a plain-text body before any handler above sees them)."""
    patterns, app_name, namespace = api.urls
    return [_json_405(pattern) for pattern in patterns], app_name, namespace


def _json_405(pattern: Any) -> Any:
    view = pattern.callback
    if not callable(view) or asyncio.iscoroutinefunction(view):
        return pattern  # the views above are all sync; a new async one keeps ninja's answer

    @functools.wraps(view)
    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if response.status_code != 405:
            return response
        allowed = response.get("Allow", "")
        refused = JsonResponse(
            {"error": f"{request.method} is not allowed here; use {allowed or 'another method'}"},
            status=405,
        )
        refused["Allow"] = allowed
        return refused

    return URLPattern(pattern.pattern, answer, pattern.default_args, pattern.name)


def unknown_api_path(request: HttpRequest) -> HttpResponse:
    """Any other path under /api/: a JSON 404 like the API's own."""
    return JsonResponse({"error": f"no API endpoint at {request.path}"}, status=404)
