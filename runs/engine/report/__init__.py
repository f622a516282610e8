"""The report: written from a finished run's steps, with what it keeps to be checked."""
