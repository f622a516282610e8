"""`python -m runs.demo --port N`: the scripted OpenAI-compatible model on its own."""

from __future__ import annotations

from runs.demo.server import main

raise SystemExit(main())
