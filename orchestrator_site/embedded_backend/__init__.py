"""A PostgreSQL backend that starts the embedded server on the first connection it opens."""
