"""The model slot queue's SQL, in one place (runs.engine.queue.scheduler calls it by name).

The line for a model's slots: a step's place in it only ever moves forward, and only when a
step ahead of it leaves the line (granted, cancelled, its worker gone). A step joins at the
end (`line_at`), never ahead of anyone already waiting. Round robin by owner comes from who
may join: each owner (runs without one share the key 0) has one step in the line at a time;
their other waiting steps are "in line" without a place until it leaves, then the first of
them (in claim order) joins at the end, behind the other owners' steps. One user's backlog
thus costs another user's first step at most one turn per owner ahead of it.

A model served by several endpoints has one line and a cap per endpoint: a step holding a
slot holds it on the endpoint in its `endpoint` column, and the placement of each grant
(runs.engine.queue.placement) is decided in Python from `SEATS`, under the same lock.
"""

from __future__ import annotations

# Slot decisions run between a step's turns and on every hand-off, so they are plain SQL: the
# ORM's query building cost more than the queries. `live` is the model's steps whose worker is
# alive: the claimed ones, which hold a slot or wait for one, and any other step still holding
# a slot. A cancelled step keeps its slot until its agent has closed its request and given the
# slot back (or its lease lapses): the cap counts open requests, not statuses. Every grant is
# rechecked at its write (a cancel does not take the model's slot lock), and a granted step
# now waits for the server's first byte.
LIVE = """
    WITH live AS (
        SELECT s.id, s.lease_owner, s.status, s.holds_slot, s.wants_slot, s.queued_at,
            s.line_at, s.run_id, s.endpoint, s.asked_at, r.endpoint_url, s.slot_at, s.phase,
            coalesce(r.owner_id, 0) AS party,
            (s.wants_slot AND NOT s.holds_slot AND s.status = ANY(%(active)s)) AS waits
        FROM flow_steps s JOIN flow_runs r ON r.id = s.run_id
        WHERE r.model = %(model)s AND s.lease_expires_at > %(now)s
            AND s.status = ANY(%(slotted)s) AND (s.status = ANY(%(active)s) OR s.holds_slot)
    )"""
# The end of the line: a moment after everyone in it (and not before now).
_TAIL = """greatest(%(now)s, (SELECT max(line_at) FROM live WHERE waits AND line_at IS NOT NULL)
    + interval '1 microsecond')"""
# Every live step's seat: the slots held (and where), and the waiters, in line order (placed
# steps first, then those without a place yet, in claim order).
SEATS = f"""{LIVE}
    SELECT id, lease_owner, status = ANY(%(active)s), holds_slot, waits, line_at IS NOT NULL,
        run_id, endpoint, asked_at, endpoint_url
    FROM live
    ORDER BY line_at NULLS LAST, queued_at, id
"""
# Per run of the waiters: on which endpoint its steps' last turns ran (its shared prefix).
RUN_PROMPTS = """
    SELECT run_id, endpoint, count(*) FROM flow_steps
    WHERE run_id = ANY(%(runs)s) AND endpoint <> '' GROUP BY run_id, endpoint
"""
# The endpoints no turn goes to now (a probe has not seen them back yet).
DOWN = """
    SELECT url FROM model_endpoints WHERE url = ANY(%(urls)s) AND down_until > %(now)s
"""
# The model's line as it stands: the waiters in line order (placed steps first, then those
# without a place yet, in claim order) with their owner, whether each has its place, and the
# steps that bear on how long they wait: the holders (since when) and any step whose server
# is unavailable. Where each waiter will be granted is projected from it in Python
# (runs.engine.queue.scheduler.queue_line), by PROMOTE's rule.
LINE = f"""{LIVE}
    SELECT id, party, waits, line_at IS NOT NULL, holds_slot, slot_at, phase
    FROM live WHERE waits OR holds_slot OR phase = 'unavailable'
    ORDER BY line_at NULLS LAST, queued_at, id
"""
# Grant this step a slot on an endpoint (a hand-over grants another worker's step).
GRANT = """
    UPDATE flow_steps SET holds_slot = true, wants_slot = false, line_at = NULL,
        endpoint = %(endpoint)s, slot_at = %(now)s, started_at = coalesce(started_at, %(now)s),
        phase = 'first_byte', phase_note = '', phase_until = NULL
    WHERE id = %(step)s AND (%(worker)s = '' OR lease_owner = %(worker)s)
        AND status = ANY(%(active)s) AND lease_expires_at > %(now)s
    RETURNING id
"""
# Ask for a slot (once: it polls while it waits): at the end of the line, or without a place
# while another step of its owner is in the line.
JOIN_LINE = f"""{LIVE}
    UPDATE flow_steps SET wants_slot = true, phase = 'slot', phase_note = '', phase_until = NULL,
        asked_at = %(now)s, line_at = CASE WHEN EXISTS (
            SELECT 1 FROM live other JOIN live me ON me.id = %(step)s
            WHERE other.waits AND other.line_at IS NOT NULL AND other.party = me.party
                AND other.id <> me.id
        ) THEN NULL ELSE {_TAIL} END
    WHERE id = %(step)s AND lease_owner = %(worker)s
        AND status = ANY(%(active)s) AND lease_expires_at > %(now)s
        AND (NOT wants_slot OR phase <> 'slot')
"""
# Each owner with waiting steps but none in the line: their first (in claim order) joins at
# the end, owners in the order their steps were claimed.
PROMOTE = f"""{LIVE},
    placed AS (SELECT DISTINCT party FROM live WHERE waits AND line_at IS NOT NULL),
    firsts AS (
        SELECT DISTINCT ON (party) id, queued_at FROM live
        WHERE waits AND line_at IS NULL AND party NOT IN (SELECT party FROM placed)
        ORDER BY party, queued_at, id
    ),
    joining AS (
        SELECT id, row_number() OVER (ORDER BY queued_at, id) AS n FROM firsts
    )
    UPDATE flow_steps s SET line_at = {_TAIL} + j.n * interval '1 microsecond'
    FROM joining j WHERE s.id = j.id
"""
# Give this step's slot back (its request is closed), adding how long it held it to its
# sums unless the turn failed there (`counted` false: a refused connection holds a slot for
# moments, and a line that moves at the server's pace would look fast after an outage);
# `RELEASE_FOR_TOOLS` also says its tools run now.
_HELD = """holds_slot = false, wants_slot = false, slot_at = NULL,
        held_seconds = held_seconds + CASE WHEN %(counted)s AND holds_slot AND slot_at IS NOT NULL
            THEN greatest(0, extract(epoch FROM %(now)s - slot_at)) ELSE 0 END,
        grants = grants + CASE WHEN %(counted)s AND holds_slot AND slot_at IS NOT NULL
            THEN 1 ELSE 0 END"""
RELEASE = f"""
    UPDATE flow_steps SET {_HELD}
    WHERE id = %(step)s AND lease_owner = %(worker)s
"""
RELEASE_FOR_TOOLS = f"""
    UPDATE flow_steps SET {_HELD},
        phase = 'tool', phase_note = %(tools)s, phase_until = NULL
    WHERE id = %(step)s AND lease_owner = %(worker)s
"""
# Is this step still this worker's and waiting (not cancelled, not taken over)?
STILL_WAITING = """
    SELECT 1 FROM flow_steps
    WHERE id = %(step)s AND lease_owner = %(worker)s AND wants_slot AND NOT holds_slot
        AND status = ANY(%(active)s) AND lease_expires_at > %(now)s
"""
# Does a step of another owner wait for the model's slots? A step keeps its slot through quick
# tool calls only while nobody else's work waits: fairness first, then the server's cache.
OTHERS_WAITING = f"""{LIVE}
    SELECT EXISTS (
        SELECT 1 FROM live other JOIN live me ON me.id = %(step)s
        WHERE other.waits AND other.party <> me.party
    )
"""
