"""A real llama.cpp `llama-server` for the test suite: built from source, a tiny model, a runner.

Nothing here is imported by the product; the real-server tests (`tests/realserver/`) and the
Makefile's `llama-server` target use it.
"""
