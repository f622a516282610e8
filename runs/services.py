"""What the CLI, the pane and the admin call: launch, cancel, retry."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from flows.registry import check_band, get_flow, get_slash_flow
from runs.engine.agent.modelconfig import configured_endpoint, configured_model_id
from runs.engine.queue import scheduler
from runs.engine.report import reporting
from runs.engine.target.confinement import target_identity
from runs.engine.web.tools import web_configured
from runs.models import FlowRun, FlowStep, HostPane, Origin, RunStatus, StepStatus
from runs.targets import REFUSAL, TargetRefused, check_run, resolve_target

log = logging.getLogger(__name__)
DISPATCH_CHANNEL = "orchestrator.dispatch"
MAX_FOCUS_CHARS = 4000


class LaunchError(ValueError):
    """Bad input to a launch; the message is shown to the person as is."""


class RunRefused(LaunchError):
    """The user may no longer use the run's directory (runs.targets): a 403 at every door."""


class PendingCapReached(LaunchError):
    """The owner already has ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER runs waiting."""


def check_pending_room(owner: Any) -> None:
    """Refuse a launch or a retry that would give this user more pending runs than the cap.

    The caller holds the owner's row locked (`_lock_owner`), so two launches at once cannot
    both take the last place. Runs without an owner (the CLI's operator) are not capped."""
    cap = settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER
    if not cap or not getattr(owner, "pk", None):
        return
    pending = FlowRun.objects.filter(owner_id=owner.pk, status=RunStatus.PENDING).count()
    if pending >= cap:
        raise PendingCapReached(
            f"You already have {pending} runs waiting to start (at most {cap}); wait for one "
            "to start or cancel one, then try again."
        )


def _lock_owner(owner: Any) -> None:
    if getattr(owner, "pk", None):
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()


def launch_run(
    *,
    flow: str,
    target: str,
    band: str = "small",
    fast: bool = False,
    focus: str = "",
    owner: Any = None,
    origin: str = Origin.CLI,
    host_pane: str = HostPane.NONE,
    web: bool = False,
) -> FlowRun:
    """Validate, create the run and its steps in one transaction, then wake a worker."""
    try:
        # The slash command offers only the slash menu's flows, at every door that says it is one.
        definition = get_slash_flow(flow) if origin == Origin.SLASH else get_flow(flow)
        check_band(band)
    except (LookupError, ValueError) as exc:
        raise LaunchError(str(exc)) from None
    if "\x00" in focus:
        raise LaunchError("the focus text contains a NUL byte")
    if len(focus) > MAX_FOCUS_CHARS:
        raise LaunchError(f"the focus text is too long ({len(focus)} > {MAX_FOCUS_CHARS} chars)")
    if origin not in Origin.values or host_pane not in HostPane.values:
        raise LaunchError("unknown origin or host pane")
    check_web(web)
    try:
        real_target = resolve_target(target, owner)
        identity = target_identity(real_target)
    except TargetRefused as exc:
        raise LaunchError(str(exc)) from None
    except OSError:
        raise LaunchError(REFUSAL) from None
    model_id = configured_model_id()
    # The run owns its endpoint: every worker runs its steps there, whatever its own settings.
    endpoint_url, endpoint_model = configured_endpoint(model_id)
    with transaction.atomic():
        _lock_owner(owner)
        check_pending_room(owner)
        run = FlowRun.objects.create(
            owner=owner if getattr(owner, "pk", None) else None,
            flow=definition.slug,
            band=band,
            fast=fast,
            target=str(real_target),
            target_real_path=str(real_target),
            target_identity=identity,
            focus=focus.strip(),
            model=model_id,
            endpoint_url=endpoint_url,
            endpoint_model=endpoint_model,
            origin=origin,
            host_pane=host_pane,
            web=web,
        )
        FlowStep.objects.bulk_create(
            FlowStep(
                run=run,
                key=step.key,
                role=step.role,
                title=step.title,
                kind=step.kind.value,
                position=position,
                depends_on=list(step.depends_on),
                tolerates_failed_deps=step.tolerates_failed_deps,
                status=StepStatus.PENDING if step.depends_on else StepStatus.READY,
            )
            for position, step in enumerate(definition.roster(band))  # type: ignore[arg-type]
        )
        transaction.on_commit(wake_workers)
    log.info("launched %s run %s on %s", definition.slug, run.id, real_target)
    return run


def check_web(web: bool) -> None:
    """The web may be switched on only where a search endpoint is configured."""
    if web and not web_configured():
        raise LaunchError(
            "the web is not available on this server: set ORCHESTRATOR_WEB_SEARCH_URL to a "
            "SearXNG-compatible JSON search endpoint to allow it"
        )


def launch_settings(run: FlowRun) -> dict[str, Any]:
    """What a run was launched with, as launch_run (and the launcher's fields) take it."""
    return {
        "flow": run.flow,
        "target": run.target,
        "band": run.band,
        "fast": run.fast,
        "focus": run.focus,
        "web": run.web,
    }


def rerun(run: FlowRun, owner: Any) -> FlowRun:
    """A new run with the same settings as `run` (finished or not), launched by `owner`; the
    target is checked again like any launch's. LaunchError says why it cannot start."""
    return launch_run(
        **launch_settings(run), owner=owner, origin=Origin.BUTTON, host_pane=run.host_pane
    )


def cancel_run(run_id: UUID) -> bool:
    cancelled = scheduler.cancel_run(run_id)
    if cancelled:
        reporting.finalize_run(run_id)
        wake_workers()
        tell_viewers(run_id)
    return cancelled


def _check_retry(run_id: UUID, user: Any) -> None:
    """A retry is a new use of the run's target, so it asks the same rule a launch does, and
    puts the run back among its owner's pending runs, so it counts against the same cap
    (inside the caller's transaction, with the owner's row locked as a launch holds it)."""
    run = FlowRun.objects.select_related("owner").get(id=run_id)
    _lock_owner(run.owner)
    try:
        check_run(user, run)
    except TargetRefused as exc:
        raise RunRefused(str(exc)) from None
    if run.status != RunStatus.PENDING:
        check_pending_room(run.owner)


def retry_step(run_id: UUID, key: str, *, user: Any) -> bool:
    """Re-run a step (and what depends on it); LaunchError when `user` may not (None: the
    operator)."""
    with transaction.atomic():
        _check_retry(run_id, user)
        retried = scheduler.retry_step(run_id, key)
    if retried:
        wake_workers()
        tell_viewers(run_id)
    return retried


def retry_cancelled(run_id: UUID, *, user: Any) -> bool:
    """Re-run a cancelled run's cancelled steps (and what depends on them); the finished
    work stays. LaunchError when `user` may not."""
    keys = list(
        FlowStep.objects.filter(run_id=run_id, status=StepStatus.CANCELLED).values_list(
            "key", flat=True
        )
    )
    with transaction.atomic():
        _check_retry(run_id, user)
        retried = bool(keys) and scheduler.retry_steps(run_id, keys)
    if retried:
        wake_workers()
        tell_viewers(run_id)
    return retried


def tell_viewers(run_id: UUID) -> None:
    """Open panes redraw the whole run (every row changed at once)."""
    from runs.engine.agent.events import publish

    try:
        async_to_sync(publish)(run_id, {"type": "run.changed"})
    except Exception:  # a viewer missing an update must not fail the action itself
        log.warning("could not notify the viewers of run %s", run_id)


def wake_workers() -> None:
    """A hint only: workers also sweep the database every few seconds."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.send)(DISPATCH_CHANNEL, {"type": "engine.wake"})
    except Exception:  # a full or unreachable layer must not fail the launch itself
        log.warning("could not wake the workers; they will find the work on their next sweep")
