"""The model slot queue's SQL, in one place (runs.engine.queue.scheduler calls it by name)."""

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
        SELECT s.id, s.lease_owner, s.status, s.holds_slot, s.wants_slot, s.queued_at
        FROM flow_steps s JOIN flow_runs r ON r.id = s.run_id
        WHERE r.model = %(model)s AND s.lease_expires_at > %(now)s
            AND s.status = ANY(%(slotted)s) AND (s.status = ANY(%(active)s) OR s.holds_slot)
    )"""
# This step's place: does it hold a slot, how many are held, how many waiters are ahead of it.
PLACE = f"""{LIVE}
    SELECT me.holds_slot,
        (SELECT count(*) FROM live WHERE live.holds_slot),
        (SELECT count(*) FROM live WHERE live.wants_slot AND NOT live.holds_slot
            AND live.status = ANY(%(active)s)
            AND (live.queued_at, live.id) < (me.queued_at, me.id))
    FROM live me
    WHERE me.id = %(step)s AND me.lease_owner = %(worker)s AND me.status = ANY(%(active)s)
"""
# The model's line of waiters, first come first served: each step's place in it (1 = next).
LINE = f"""{LIVE},
    line AS (
        SELECT id, row_number() OVER (ORDER BY queued_at, id) AS place
        FROM live WHERE wants_slot AND NOT holds_slot AND status = ANY(%(active)s)
    )
    SELECT id, place FROM line WHERE id = ANY(%(steps)s)
"""
# Grant the free slots to the waiters first in line; returns their ids.
HAND_OVER = f"""{LIVE},
    chosen AS (
        SELECT id FROM live
        WHERE wants_slot AND NOT holds_slot AND status = ANY(%(active)s)
        ORDER BY queued_at, id
        LIMIT greatest(0, %(slots)s - (SELECT count(*) FROM live WHERE holds_slot))
    )
    UPDATE flow_steps SET holds_slot = true, wants_slot = false,
        started_at = coalesce(started_at, %(now)s),
        phase = 'first_byte', phase_note = '', phase_until = NULL
    WHERE id IN (SELECT id FROM chosen)
        AND status = ANY(%(active)s) AND lease_expires_at > %(now)s
    RETURNING id
"""
# Grant this step a slot.
GRANT = """
    UPDATE flow_steps SET holds_slot = true, wants_slot = false,
        started_at = coalesce(started_at, %(now)s),
        phase = 'first_byte', phase_note = '', phase_until = NULL
    WHERE id = %(step)s AND lease_owner = %(worker)s
        AND status = ANY(%(active)s) AND lease_expires_at > %(now)s
    RETURNING id
"""
# Put this step in the line (once: it polls while it waits).
JOIN_LINE = """
    UPDATE flow_steps SET wants_slot = true, phase = 'slot', phase_note = '', phase_until = NULL
    WHERE id = %(step)s AND lease_owner = %(worker)s
        AND status = ANY(%(active)s) AND lease_expires_at > %(now)s
        AND (NOT wants_slot OR phase <> 'slot')
"""
# Give this step's slot back (its request is closed); `RELEASE_FOR_TOOLS` also says its tools
# run now.
RELEASE = """
    UPDATE flow_steps SET holds_slot = false, wants_slot = false
    WHERE id = %(step)s AND lease_owner = %(worker)s
"""
RELEASE_FOR_TOOLS = """
    UPDATE flow_steps SET holds_slot = false, wants_slot = false,
        phase = 'tool', phase_note = %(tools)s, phase_until = NULL
    WHERE id = %(step)s AND lease_owner = %(worker)s
"""
