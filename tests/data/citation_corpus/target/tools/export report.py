"""Monthly export of paid orders."""

from lib.money import format_cents


def export(rows):
    for row in rows:
        if not row["paid"]:
            continue
        if row["cents"] < 0:
            raise ValueError("negative amount")
        print(row["order"], format_cents(row["cents"]))
