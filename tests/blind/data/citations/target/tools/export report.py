"""Writes the monthly CSV report; run by hand from the tools folder."""

import sys

from app.utils import format_cents


def main(argv):
    month = argv[1] if len(argv) > 1 else "current"
    rows = load(month)
    for row in rows:
        print(row["order"], format_cents(row["cents"]))
    return 0


def load(month):
    return []


if __name__ == "__main__":
    sys.exit(main(sys.argv))
