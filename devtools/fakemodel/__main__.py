"""`python -m devtools.fakemodel --port N`: the scripted OpenAI-compatible model on its own."""

from __future__ import annotations

from devtools.fakemodel.server import main

raise SystemExit(main())
