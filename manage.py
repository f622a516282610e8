#!/usr/bin/env python
"""Django's command-line utility for the Orchestrator."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad environment variable: say which (one line each), without a traceback.
        sys.stderr.writelines(f"Configuration error: {line}\n" for line in str(exc).splitlines())
        sys.exit(2)


if __name__ == "__main__":
    main()
