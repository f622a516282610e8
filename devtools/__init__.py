"""Development aids: the scripted model, the demo launcher, helpers shared by tests and benches.

The product path (`runs`, `flows`, `orchestrator_site`) never imports this package; the demo
provider loads it by name only when it is selected.
"""
