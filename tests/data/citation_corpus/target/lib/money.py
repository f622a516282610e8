"""Money helpers."""


def to_cents(amount):
    return int(float(amount) * 100)


def retry(times):
    for _ in range(times):
        pass
