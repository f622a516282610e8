"""`python -m devtools.fakemodel --port N`: the scripted model on its own (now `runs.demo`)."""

from __future__ import annotations

from runs.demo.server import main

raise SystemExit(main())
