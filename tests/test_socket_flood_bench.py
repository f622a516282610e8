"""The socket flood bench in its smoke mode (bench/socket_flood.py): the real server, four of
bob's sockets flooding `resume` with unknown ids, alice's pane and the server's memory
measured before, during and after. The bench itself holds the bounds and exits 1 past them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devtools.testing import ROOT, manage_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_flood_by_one_user_leaves_anothers_pane_and_the_servers_memory_flat():
    bench = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "socket_flood.py"), "--smoke"],
        cwd=ROOT,
        env=manage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(bench.stdout)
    assert bench.returncode == 0, bench.stdout + bench.stderr[-3000:]
    for phase in ("before", "during", "after"):
        assert re.search(rf"alice's pane round trip, {phase} the flood *: n=\d+", bench.stdout)
    flood = re.search(r"(\d+) messages sent on (\d+) connections, (\d+) closed", bench.stdout)
    assert flood is not None
    sent, connections, closed = map(int, flood.groups())
    # Every flooding socket was closed by the server, having been answered at most its burst
    # plus what was in flight.
    assert connections > 0 and sent > 0
    assert closed >= connections - 4  # those still open when the flood ended
