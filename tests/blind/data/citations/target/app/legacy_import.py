"""An old import path kept for the nightly job (saved on Windows)."""

import csv


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def total_of(rows):
    total = 0
    for row in rows:
        total += int(row["amount"])
    return total


def export_rows(rows, path):
    with open(path, "w") as handle:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow(row.values())
