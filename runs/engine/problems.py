"""A pydantic validation error as one sentence a person (or the model) can act on."""

from __future__ import annotations

from pydantic import ValidationError


def validation_problems(exc: ValidationError, *, whole: str = "value", limit: int = 5) -> str:
    """`field.sub: message; ...` for the first `limit` problems; `whole` names a root error."""
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or whole}: {_message(error['msg'])}"
        for error in exc.errors()[:limit]
    )


def _message(text: str) -> str:
    """pydantic's message without its "Value error, " prefix (a validator's own sentence)."""
    return text.removeprefix("Value error, ")
