"""Tiny validating readers for the environment: a bad value names its variable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_json_object(name: str) -> dict[str, Any]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def env_paths(name: str, default: list[Path]) -> list[Path]:
    """Colon-separated absolute directories, resolved (symlinks followed)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    paths = []
    for part in raw.split(os.pathsep):
        if not part:
            continue
        path = Path(part).expanduser()
        if not path.is_absolute():
            raise ImproperlyConfigured(f"{name} must list absolute paths, got {part!r}")
        paths.append(path.resolve())
    return paths


def env_url(name: str) -> str:
    """An http(s) URL with a host, or "" when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return raw


def env_hosts(name: str) -> frozenset[str]:
    """Comma-separated host names or addresses, lower-cased (IPv6 without brackets)."""
    raw = os.environ.get(name, "")
    hosts = set()
    for part in raw.split(","):
        host = part.strip().lower().removeprefix("[").removesuffix("]")
        if not host:
            continue
        if any(c in host for c in "/@ ") or host.count(":") == 1:
            raise ImproperlyConfigured(
                f"{name} must list bare host names or addresses (no scheme, port or path), "
                f"got {part.strip()!r}"
            )
        hosts.add(host)
    return frozenset(hosts)


def database_from_url(name: str, url: str) -> dict[str, Any]:
    """Django DATABASES entry from a postgres:// URL (host may come from ?host=/socket/dir)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(
            f"{name} must be a postgresql:// URL, got scheme {parts.scheme!r}"
        )
    query = parse_qs(parts.query)
    host = query.pop("host", [parts.hostname or ""])[0]
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgresql://u@host/db")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": {key: values[0] for key, values in query.items()},
    }
