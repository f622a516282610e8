"""Money helpers shared by the web views and the ledger."""

from decimal import Decimal, InvalidOperation

CENTS = 100


def parse_amount(amount):
    """Turn a user-typed amount into cents."""
    if amount is None:
        return 0
    return int(float(amount) * 100)


def format_cents(cents):
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // CENTS}.{cents % CENTS:02d}"


def safe_decimal(text):
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def retry(func, attempts=3):
    last = None
    for _ in range(attempts):
        try:
            return func()
        except ConnectionError as error:
            last = error
    raise last
