"""Per-user API tokens: made, checked and revoked here, for the API, the MCP server and the CLI.

A token is `orc_` + 8 visible characters + a long random secret. The database keeps the visible
prefix (to tell tokens apart in lists) and the sha256 of the whole token: a leaked table does not
give anyone a working token, and a token shown once cannot be shown again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from runs.models import ApiToken

SCHEME = "orc_"
PREFIX_CHARS = 8
MAX_TOKEN_CHARS = 200  # a header longer than any token we make is not worth hashing


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(owner: Any, name: str = "") -> tuple[ApiToken, str]:
    """A new token for owner; the raw token is returned here and nowhere else, ever."""
    visible = secrets.token_hex(PREFIX_CHARS // 2)
    raw = f"{SCHEME}{visible}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        owner=owner, name=name.strip()[:100], prefix=f"{SCHEME}{visible}", digest=digest(raw)
    )
    return token, raw


def user_for(raw: str) -> Any | None:
    """The active owner of a live token, or None (unknown, revoked, or its owner inactive)."""
    if not raw or len(raw) > MAX_TOKEN_CHARS or not raw.startswith(SCHEME):
        return None
    wanted = digest(raw)
    token = (
        ApiToken.objects.select_related("owner")
        .filter(digest=wanted, revoked_at__isnull=True)
        .first()
    )
    # The lookup is by digest; the constant-time compare keeps the check honest all the same.
    if token is None or not hmac.compare_digest(token.digest, wanted):
        return None
    if not token.owner.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.owner


def bearer_user(authorization: str) -> Any | None:
    """The owner named by an `Authorization: Bearer <token>` header value, or None."""
    scheme, _, raw = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return user_for(raw.strip())


def tokens_of(owner: Any) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(owner_id=owner.pk)


def revoke(owner: Any, prefix: str) -> int:
    """Revoke owner's live tokens with this visible prefix; how many were revoked."""
    return (
        tokens_of(owner)
        .filter(prefix=prefix.strip(), revoked_at__isnull=True)
        .update(revoked_at=timezone.now())
    )
