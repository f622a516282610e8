"""Runs, their steps, one agent session per step attempt, and the events each session streamed.

PostgreSQL rows are the truth; everything else (channel messages, the pane) follows them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.urls import reverse

from runs import server_slots as slot_facts
from runs.server_slots import ServerSlots

if TYPE_CHECKING:
    from runs.engine.agent.counters import Counters


class RunStatus(models.TextChoices):
    PENDING = "pending"  # created or retried; no step claimed yet (or over its owner's cap)
    RUNNING = "running"  # at least one step has been claimed and the run is not over
    SUCCEEDED = "succeeded"  # the validator gate finished and every agent succeeded
    # The validator gate finished and the report is written, but some agents failed (or were
    # skipped): the report names them and Confidence is capped.
    FINISHED_WITH_FAILURES = "finished_with_failures"
    FAILED = "failed"  # the report could not be produced or validated (reasons in error)
    CANCELLED = "cancelled"  # a person stopped it; nothing more will start


class StepStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its dependencies to finish
    READY = "ready"  # dependencies done; waiting for a worker to claim it
    QUEUED = "queued"  # claimed; waiting for a model slot or for the model's first byte
    RUNNING = "running"  # the model is streaming this agent's output
    SUCCEEDED = "succeeded"  # finished with an output
    FAILED = "failed"  # gave up after bounded retries; error says why
    CANCELLED = "cancelled"  # stopped because the run was cancelled
    SKIPPED = "skipped"  # never ran because a dependency did not succeed


TERMINAL_RUN = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FINISHED_WITH_FAILURES,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
    }
)
# Runs whose report is final (the validator gate finished), failures or not.
REPORTED_RUN = frozenset({RunStatus.SUCCEEDED, RunStatus.FINISHED_WITH_FAILURES})
TERMINAL_STEP = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED}
)
ACTIVE_STEP = frozenset({StepStatus.QUEUED, StepStatus.RUNNING})


class StepPhase(models.TextChoices):
    """What an active step is doing right now, within its status (a turn at a time).

    Values only: runs.labels alone turns a phase into words."""

    NONE = ""  # not started, or between moments worth naming
    SLOT = "slot"  # in its model's line for a slot
    FIRST_BYTE = "first_byte"  # request sent, no byte back yet
    PREFILL = "prefill"  # the server reads the prompt (it said how far: phase_note)
    GENERATING = "generating"  # the model is streaming this turn
    TOOL = "tool"  # the slot went back while its tools run
    RETRYING = "retrying"  # the turn failed; the next try waits for phase_until
    UNAVAILABLE = "unavailable"  # the server cannot be reached; waiting


class Origin(models.TextChoices):
    SLASH = "slash"
    BUTTON = "button"
    CLI = "cli"
    API = "api"


class HostPane(models.TextChoices):
    CHAT = "chat"
    CODER = "coder"
    NONE = "none"


class FlowRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    flow = models.CharField(max_length=50)
    band = models.CharField(max_length=10, default="small")
    fast = models.BooleanField(default=False)
    target = models.CharField(max_length=1000)
    # What the target was at launch, checked again at every attempt, retry and citation
    # check (runs.engine.target.confinement.open_target): its real path, and the directory's
    # `device:inode`, so a target moved, swapped or replaced by a link is refused.
    target_real_path = models.CharField(max_length=1000, blank=True)
    target_identity = models.CharField(max_length=64, blank=True)
    focus = models.TextField(blank=True)
    model = models.CharField(max_length=200)
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.CLI)
    host_pane = models.CharField(max_length=10, choices=HostPane.choices, default=HostPane.NONE)
    status = models.CharField(
        max_length=24, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The target's fingerprint when the first attempt started (runs.engine.target.readonly_proof);
    # kept with the run, so every report (a retry's too) compares against the same snapshot.
    fingerprint = models.JSONField(default=dict, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the run sat finished before a retry started it again, as [finished, retried] ISO
    # pairs: elapsed and the critical path count active time, and the timeline shows the gap.
    idle_spans = models.JSONField(default=list, blank=True)
    report = models.TextField(blank=True)
    report_data = models.JSONField(default=dict, blank=True)
    summary = models.TextField(blank=True)
    confidence = models.CharField(max_length=10, blank=True)
    error = models.TextField(blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    # The endpoints the run was launched against, comma-separated base URLs serving the same
    # model; every worker runs its steps there. Empty for runs on the scripted demo model each
    # worker starts itself (and for older runs).
    endpoint_url = models.CharField(max_length=2000, blank=True)
    endpoint_model = models.CharField(max_length=200, blank=True)  # the name sent to the server
    # The slot cap the engine applied, and what the server itself said it has (/props), both
    # summed over the servers (server_slots only once every one said); a cap above a server's
    # slots makes requests wait in the server's own queue.
    slots = models.PositiveSmallIntegerField(null=True, blank=True)
    server_slots = models.PositiveSmallIntegerField(null=True, blank=True)
    # The same for each server: its cap and its own count (runs.server_slots.ServerSlots).
    servers = models.JSONField(default=list, blank=True)
    # The web tools are offered to the flow's web roles (launched only with a search endpoint).
    web = models.BooleanField(default=False)

    class Meta:
        db_table = "flow_runs"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.flow} ({self.band}) {self.status}"

    def get_absolute_url(self) -> str:
        return reverse("runs:pane", args=[self.id])

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_RUN

    def active_seconds(self, now: datetime | None = None) -> float | None:
        """Elapsed time since the first claim, the idle gaps before retries left out."""
        if self.started_at is None:
            return None
        from django.utils import timezone

        end = self.finished_at or now or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds() - self.idle_seconds)

    @property
    def idle(self) -> list[tuple[datetime, datetime]]:
        """The spans the run sat finished before a retry, oldest first."""
        return [
            (datetime.fromisoformat(finished), datetime.fromisoformat(retried))
            for finished, retried in self.idle_spans
        ]

    @property
    def idle_seconds(self) -> float:
        return sum((retried - finished).total_seconds() for finished, retried in self.idle)

    @property
    def idle_ms(self) -> int:
        return int(self.idle_seconds * 1000)

    @property
    def failed_agents(self) -> int:
        """How many agents the report names as failed or skipped."""
        return len(self.report_data.get("failed_agents") or [])

    @property
    def is_demo(self) -> bool:
        """Run on the scripted demo model, not a real one."""
        from runs.engine.agent.modelconfig import DEMO_PROVIDER

        return self.model.partition("/")[0] == DEMO_PROVIDER

    @property
    def server_slots_each(self) -> list[ServerSlots]:
        """Each model server's cap and own slots; for older runs, their sums as one."""
        each = slot_facts.read(self.servers or [])
        if each or not self.slots or self.servers:
            return each
        url = self.endpoint_url or "the model server"
        return [ServerSlots(url=url, cap=self.slots, has=self.server_slots, set=True)]

    @property
    def slot_warning(self) -> str:
        """A sentence naming the servers whose slot cap exceeds their own slots, else empty."""
        return slot_facts.slot_warning(self.server_slots_each)


class ModelEndpoint(models.Model):
    """A model server that went away, shared by every worker: no turn is placed on it until
    a probe of its /props answers again (runs.engine.agent.servers)."""

    url = models.CharField(max_length=500, unique=True)
    down_until = models.DateTimeField(null=True, blank=True)  # None: up
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        db_table = "model_endpoints"

    def __str__(self) -> str:
        return self.url


class FlowStep(models.Model):
    run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=50)
    role = models.CharField(max_length=50)
    title = models.CharField(max_length=80)
    kind = models.CharField(max_length=12)
    position = models.PositiveSmallIntegerField()
    depends_on = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    tolerates_failed_deps = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=StepStatus.choices, default=StepStatus.PENDING, db_index=True
    )
    attempt = models.PositiveSmallIntegerField(default=0)
    # The attempts made before the latest retry: a retry starts afresh, so ORCHESTRATOR_MAX_ATTEMPTS
    # counts `attempt - attempt_base`, and only sessions after it may be resumed.
    attempt_base = models.PositiveSmallIntegerField(default=0)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # True while this step occupies one of its model's slots (the cap holds across workers).
    # A step holds a slot for one model turn at a time and gives it back while its tools run.
    holds_slot = models.BooleanField(default=False)
    # True while this step asks for one of its model's slots.
    wants_slot = models.BooleanField(default=False)
    # When the step took its place at the end of its model's line (the line is ordered by
    # it, so a place only moves forward); empty while another step of its owner is in the
    # line ahead of it: each owner has one step in the line at a time (runs.engine.queue.slotsql).
    line_at = models.DateTimeField(null=True, blank=True)
    # When it asked for the slot it waits for (it prefers its last endpoint only for a while).
    asked_at = models.DateTimeField(null=True, blank=True)
    # The endpoint (base URL) of its slot while it holds one, else of its last turn: the
    # server that holds its prompt, where its next turn is placed when a slot is free there.
    endpoint = models.CharField(max_length=500, blank=True)
    # When its slot was granted, while it holds one; and over its attempts, the seconds it
    # held a slot and the grants those cover (summed at each release): how long a grant
    # keeps a slot, the measure a waiter's wait is estimated from (runs.waits).
    slot_at = models.DateTimeField(null=True, blank=True)
    held_seconds = models.FloatField(default=0.0)
    grants = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)  # when this attempt was claimed
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # What an active step is doing now (see StepPhase); the note names the tool or the fault,
    # phase_until is when a retry is due.
    phase = models.CharField(max_length=12, choices=StepPhase.choices, default="", blank=True)
    phase_note = models.CharField(max_length=300, blank=True)
    phase_until = models.DateTimeField(null=True, blank=True)
    # Tokens of the turns the transcript keeps...
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    # ...and of every attempt, retried, cut off or cancelled ones included (so >= kept). The
    # output of a stream that never finished is counted by its chunks, its prompt estimated.
    tokens_spent_in = models.PositiveIntegerField(default=0)
    tokens_spent_out = models.PositiveIntegerField(default=0)
    # From the server's timings (llama.cpp): prompt tokens reused from its cache, and the
    # tokens generated over the seconds spent generating them, summed over the kept turns.
    cached_tokens = models.PositiveIntegerField(default=0)
    decode_tokens = models.PositiveIntegerField(default=0)
    decode_seconds = models.FloatField(default=0.0)
    # The prompt tokens it evaluated (not from its cache) over the seconds spent on them, and
    # the turns those sums cover: the speeds a queued agent's wait is estimated from.
    prefill_tokens = models.PositiveIntegerField(default=0)
    prefill_seconds = models.FloatField(default=0.0)
    timed_turns = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    last_tool = models.CharField(max_length=200, blank=True)
    # The final answer stopped at the output limit (finish_reason "length"): it is partial.
    truncated = models.BooleanField(default=False)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "flow_steps"
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "key"], name="flow_step_key_unique_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    @property
    def elapsed_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        from django.utils import timezone

        end = self.finished_at or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def first_token_seconds(self) -> float | None:
        if self.started_at is None or self.first_token_at is None:
            return None
        return max(0.0, (self.first_token_at - self.started_at).total_seconds())

    @property
    def counters(self) -> Counters:
        """What this step's attempts counted, as one value (spent never below kept)."""
        from runs.engine.agent.counters import Counters

        return Counters.of(self)

    @property
    def waits_for_slot(self) -> bool:
        """Claimed and in its model's line for a slot (the views' test; the line's own is
        slotsql.LIVE's `waits`)."""
        return self.status in ACTIVE_STEP and self.wants_slot and not self.holds_slot

    @property
    def attempts_this_retry(self) -> int:
        """The attempt number counted since the latest retry (the attempt cap's count)."""
        return self.attempt - self.attempt_base

    @property
    def decode_rate(self) -> float | None:
        """Tokens generated per second while generating (server timings), if reported."""
        if self.decode_seconds <= 0 or not self.decode_tokens:
            return None
        return self.decode_tokens / self.decode_seconds

    @property
    def cache_reuse(self) -> float | None:
        """The share of prompt tokens the server reused from its cache (0..1), if reported
        (runs.engine.agent.counters owns the rule)."""
        return self.counters.cache_reuse


class AgentSession(models.Model):
    """One attempt at one step: the transcript is checkpointed after every completed turn."""

    step = models.ForeignKey(FlowStep, on_delete=models.CASCADE, related_name="sessions")
    attempt = models.PositiveSmallIntegerField()
    worker = models.CharField(max_length=100)
    backend = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    transcript = models.JSONField(default=list)
    turns_completed = models.PositiveSmallIntegerField(default=0)
    resumed_from_turn = models.PositiveSmallIntegerField(default=0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    # Why this attempt ended without an outcome, when its worker could say (a shutdown, a
    # database outage); the attempt cap reports the last one.
    ended = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "agent_sessions"
        ordering = ["step", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["step", "attempt"], name="agent_session_per_attempt")
        ]

    def __str__(self) -> str:
        return f"{self.step.key} attempt {self.attempt}"


class EventKind(models.TextChoices):
    TEXT = "text"
    REASONING = "reasoning"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    STATUS = "status"
    ERROR = "error"


class AgentEvent(models.Model):
    session = models.ForeignKey(AgentSession, on_delete=models.CASCADE, related_name="events")
    # Denormalised so a pane loads one agent's history with one indexed query.
    step = models.ForeignKey(FlowStep, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=EventKind.choices)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agent_events"
        ordering = ["session", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="agent_event_seq_unique")
        ]
        indexes = [
            models.Index(fields=["step", "id"], name="agent_event_step_idx"),
            # The few events that are not model text (tool calls and results, statuses): the
            # pane's timeline reads them without touching a long run's thousands of deltas.
            models.Index(
                fields=["step", "id"],
                name="agent_event_mark_idx",
                condition=~models.Q(kind__in=["text", "reasoning"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.seq} {self.kind}"

    def as_message(self) -> dict[str, Any]:
        """The event as live panes receive it, pushed or read back (session + seq resume it)."""
        return {
            "id": self.pk,
            "session": self.session_id,
            "seq": self.seq,
            "kind": self.kind,
            "payload": self.payload,
        }


class ChatMessage(models.Model):
    """A message in the workspace's chat pane (where "send to chat" lands by default)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    run = models.ForeignKey(FlowRun, null=True, blank=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "chat_messages"
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.text[:60]


class WorkspaceLayout(models.Model):
    """What a person's workspace shows, kept across reloads and devices: each host pane's
    project directory and the orchestrator panes left open (newest first)."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workspace_layout"
    )
    targets = models.JSONField(default=dict, blank=True)  # host pane -> project directory
    open_runs = ArrayField(models.UUIDField(), default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "workspace_layouts"

    def __str__(self) -> str:
        return f"workspace of {self.owner_id}"


class ApiToken(models.Model):
    """A person's key for the launch API and the MCP server. Only a hash of the secret is kept:
    the token is shown once, at creation (runs.api_tokens), and a lost token is revoked and
    replaced, never read back."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)  # what the person uses it for
    prefix = models.CharField(max_length=16, db_index=True)  # visible, to tell tokens apart
    digest = models.CharField(max_length=64, unique=True)  # sha256 of the whole token, hex
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)  # set once; a revoked token is 401

    class Meta:
        db_table = "api_tokens"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"


class TargetGrant(models.Model):
    """A directory one user, or everyone in one group, may analyse (and everything under it).

    Granted by a superuser in the admin; runs.targets is the one reader. A grant counts only
    inside ORCHESTRATOR_ALLOWED_ROOTS, which stays the outer fence."""

    directory = models.CharField(max_length=1000, help_text="an absolute real directory path")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="target_grants",
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="target_grants"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "target_grants"
        ordering = ["directory"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, group__isnull=True)
                | models.Q(user__isnull=True, group__isnull=False),
                name="target_grant_to_a_user_or_a_group",
            )
        ]

    def __str__(self) -> str:
        return f"{self.directory} to {self.user or self.group}"


class WebSource(models.Model):
    """What the web gave a run: the URLs its searches returned (which its agents may then
    fetch) and the text of every page fetched, which web citations are checked against."""

    class Kind(models.TextChoices):
        RESULT = "result"  # a URL a search of this run returned; text is its snippet
        PAGE = "page"  # a page fetched during the run; text is its main text (capped)

    run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="web_sources")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.TextField()  # as the agent asked (or as the search returned it)
    final_url = models.TextField(blank=True)  # where redirects ended
    title = models.CharField(max_length=300, blank=True)
    text = models.TextField(blank=True)
    step_key = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "web_sources"
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.url[:80]}"
