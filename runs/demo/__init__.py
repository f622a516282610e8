"""The scripted demo model: a real OpenAI-compatible server with deterministic agents.

The `demo` provider (`ORCHESTRATOR_MODEL=demo/scripted`) starts it inside the process that
runs agents; tests and benches drive the same server with faults and speeds of their own.
"""
