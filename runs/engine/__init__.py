"""The engine: scheduler, worker, agent loop, backends, read-only tools and path confinement.

Nothing here renders HTML or answers HTTP; the web layer in `runs/` sits on top of it.
"""
