"""The queue: claims, leases, model slots, fair use and the DAG, as PostgreSQL transactions."""
