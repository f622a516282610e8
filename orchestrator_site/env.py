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


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = env_str(name, default).lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


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


def env_origin(name: str, default: str) -> str:
    """An origin: http(s)://host[:port], without a path."""
    raw = env_str(name, default).rstrip("/")
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path or parts.query:
        raise ImproperlyConfigured(
            f"{name} must be an origin such as http://127.0.0.1:8000, got {raw!r}"
        )
    return raw


def env_header(name: str) -> tuple[str, str] | None:
    """`Header-Name: value` (a proxy's HTTPS header) as Django's META key and value."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, colon, value = raw.partition(":")
    header, value = header.strip(), value.strip()
    if not colon or not value or not header.replace("-", "").isalnum():
        raise ImproperlyConfigured(
            f"{name} must be `Header-Name: value`, such as `X-Forwarded-Proto: https`, got {raw!r}"
        )
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_paths(name: str, default: list[Path], *, user_part: bool = False) -> list[Path]:
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
        if ("{" in part or "}" in part) and user_part:
            paths.append(_user_pattern(name, path))
        elif "{" in part or "}" in part:
            raise ImproperlyConfigured(f"{name} takes plain directories, got {part!r}")
        else:
            paths.append(path.resolve())
    return paths


def _user_pattern(name: str, path: Path) -> Path:
    """An entry with a `{user}` part: the part before it resolved, `{user}` a whole name."""
    parts = path.parts
    if sum(p == "{user}" for p in parts) != 1 or any(
        ("{" in p or "}" in p) and p != "{user}" for p in parts
    ):
        raise ImproperlyConfigured(
            f"{name}: {str(path)!r} may hold `{{user}}` once, as a whole directory name "
            "(such as /srv/projects/{user})"
        )
    at = parts.index("{user}")
    return Path(*parts[:at]).resolve().joinpath(*parts[at:])


def env_url(name: str) -> str:
    """An http(s) URL with a host, or "" when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return raw


def env_urls(name: str) -> str:
    """Comma-separated http(s) URLs (several servers of one model), checked and returned as
    written, without trailing slashes; "" when unset."""
    raw = os.environ.get(name, "").strip()
    return ",".join(split_urls(name, raw)) if raw else ""


def split_urls(name: str, value: Any) -> list[str]:
    """A URL or several (a list, or one string with commas), each http(s) with a host, none
    empty, none twice; ImproperlyConfigured names `name` otherwise. Trailing slashes go."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ImproperlyConfigured(f"{name} must be a URL or a list of URLs, got {value!r}")
    urls: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ImproperlyConfigured(f"{name} has an entry that is not a URL string: {item!r}")
        url = item.strip().rstrip("/")
        if not url:
            raise ImproperlyConfigured(f"{name} has an empty entry in {value!r}")
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, got {url!r}")
        if url in urls:
            raise ImproperlyConfigured(f"{name} lists {url!r} twice")
        urls.append(url)
    return urls


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


def env_origins(name: str) -> list[str]:
    """Space-separated exact web origins (`https://host[:port]`), as browsers send them in
    an Origin header: a scheme, a host and an optional port, nothing else (no path, no
    wildcard, no leading dot, which channels' origin check would read as "any subdomain")."""
    origins = []
    for part in os.environ.get(name, "").split():
        wrong = ImproperlyConfigured(
            f"{name} must list exact origins such as https://app.example.com:8443 "
            f"(scheme, host and port only), got {part!r}"
        )
        try:
            parts = urlsplit(part)
            port = parts.port
        except ValueError:  # a port that is not a number, or out of range
            raise wrong from None
        host = parts.hostname or ""
        exact = (
            parts.scheme in {"http", "https"}
            and host
            and not host.startswith(".")
            and "*" not in host
            and parts.path in {"", "/"}
            and not (parts.query or parts.fragment or parts.username or parts.password)
        )
        if not exact:
            raise wrong
        shown = f"[{host}]" if ":" in host else host
        origins.append(f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else ""))
    return origins
