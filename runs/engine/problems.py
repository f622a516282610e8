"""A pydantic validation error as one sentence a person (or the model) can act on."""

from __future__ import annotations

from pydantic import ValidationError


def validation_problems(exc: ValidationError, *, whole: str = "value", limit: int = 5) -> str:
    """`field.sub: message; ...` for the first `limit` problems; `whole` names a root error."""
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or whole}: {error['msg']}"
        for error in exc.errors()[:limit]
    )
