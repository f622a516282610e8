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
    parts = urlsplit(raw) if not url_problem(raw, several=False) else None
    if not parts or not parts.netloc or parts.path or parts.query:
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
    """An http(s) URL with a host (and a port, if any, from 1 to 65535), or "" when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    problem = url_problem(raw, several=False)
    if problem:
        raise ImproperlyConfigured(f"{name} {problem}")
    return raw


def env_urls(name: str) -> str:
    """Comma-separated http(s) URLs, or a JSON list of them (several servers of one model),
    checked and returned comma-separated as written, without trailing slashes; "" when
    unset."""
    raw = os.environ.get(name, "").strip()
    return ",".join(split_urls(name, raw)) if raw else ""


DEFAULT_PORTS = {"http": 80, "https": 443}
JSON_KINDS = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean"}


# Written between two endpoints instead of a comma: a list with the wrong separator.
SEPARATORS = ";|"
# No server's address holds these unescaped (RFC 3986 leaves them out of a URL, and a
# fragment is never sent), though urlsplit takes them: each is a typo or a pasted list.
UNSAFE = '"<>\\^`{}#'


def url_problem(url: str, *, several: bool = True) -> str:
    """What is wrong with `url` as a server's address, as the end of a sentence that begins
    with the setting's name; "" when it is an http(s) URL with a host and, if it gives a
    port, one from 1 to 65535 (so no connection can fail on its form). `several`: the
    setting may list endpoints, so a space, `;`, `|` or a second `://` is most likely a
    wrong separator."""
    separator = next((c for c in url if c.isspace() or c in SEPARATORS), "")
    if separator or url.count("://") > 1:
        held = "two URLs" if not separator else "a space" if separator.isspace() else separator
        held = held if len(held) > 1 else f"{held!r}"
        if not several:
            return f"must be one http:// or https:// URL (it holds {held}), got {url!r}"
        return f"must separate endpoints with commas (an entry holds {held}), got {url!r}"
    unsafe = next((c for c in url if c in UNSAFE or not c.isprintable()), "")
    if unsafe:
        return (
            f"must be an http:// or https:// URL; {unsafe!r} has no place in a server's "
            f"address, got {url!r}"
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # such as an unclosed [ around an IPv6 address
        return f"must be an http:// or https:// URL, got {url!r}"
    if parts.scheme not in DEFAULT_PORTS:
        return f"must be an http:// or https:// URL, got {url!r}"
    if not parts.hostname:
        return f"must name the server's host (such as http://127.0.0.1:8080/v1), got {url!r}"
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if parts.netloc.rpartition("@")[2].endswith(":"):
        port = 0  # "host:" with nothing after: urlsplit reads it as no port at all
    if port == 0:
        return f"must give a port that is a number from 1 to 65535, got {url!r}"
    return ""


def server_key(url: str) -> tuple[str, str, int, str, str]:
    """The server a checked URL names: the same for two spellings of one server (scheme and
    host in any case, the default port written or not, with or without a trailing / or /v1);
    different paths on one host and port stay different servers (a gateway's routes)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    path = parts.path.rstrip("/").removesuffix("/v1").rstrip("/")
    port = parts.port or DEFAULT_PORTS[scheme]
    return scheme, (parts.hostname or "").lower(), port, path, parts.query


def split_urls(name: str, value: Any) -> list[str]:
    """A URL or several (a list, or one string: comma-separated, or a JSON list), each
    http(s) with a host and a good port, none empty, no server twice; ImproperlyConfigured
    names `name` otherwise. Trailing slashes go; each URL is otherwise kept as written.

    The one rule for every endpoint list: settings, the start-up check and the engine."""
    items = _url_items(name, value)
    if not isinstance(items, list | tuple) or not items:
        raise ImproperlyConfigured(f"{name} must be a URL or a list of URLs, got {value!r}")
    urls: list[str] = []
    servers: dict[tuple[str, str, int, str, str], str] = {}
    for item in items:
        if not isinstance(item, str):
            raise ImproperlyConfigured(f"{name} has an entry that is not a URL string: {item!r}")
        url = item.strip().rstrip("/")
        if not url:
            raise ImproperlyConfigured(f"{name} has an empty entry in {value!r}")
        problem = url_problem(url)
        if problem:
            raise ImproperlyConfigured(f"{name} {problem}")
        key = server_key(url)
        if key in servers:
            first = servers[key]
            if first == url:
                raise ImproperlyConfigured(f"{name} lists {url!r} twice")
            raise ImproperlyConfigured(
                f"{name} lists one server twice: {first!r} and {url!r} (list each server once)"
            )
        servers[key] = url
        urls.append(url)
    return urls


def _url_items(name: str, value: Any) -> Any:
    """A string's entries: a JSON list's strings when it opens like JSON, else its
    comma-separated parts; anything else as it is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text.startswith(("[", "{", '"')):
        return value.split(",")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(
            f"{name} must be comma-separated URLs or a JSON list of URL strings; "
            f"it reads as JSON but is not valid JSON ({exc.msg} at character {exc.pos})"
        ) from None
    if not isinstance(parsed, list):
        kind = JSON_KINDS.get(type(parsed), type(parsed).__name__)
        raise ImproperlyConfigured(
            f"{name} must be comma-separated URLs or a JSON list of URL strings, "
            f"got a JSON {kind}: {text!r}"
        )
    return parsed


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
