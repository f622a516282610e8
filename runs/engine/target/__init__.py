"""The target: where a path may go, what is secret, the read-only tools, search and git."""
