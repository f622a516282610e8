"""Secrets assigned to a secret-like name, in code and in configuration files of every kind:
`SECRET_KEY = "..."`, `password: ...` (YAML, JSON), `db.password=...` (properties, .env),
`export GITHUB_TOKEN=...`, `AccountKey=...;` (connection strings), `<password>...</password>`,
`--password=...` and `mysql -p...` on a command line.

The names are detect-secrets' keyword detector's list (its DENYLIST), plus `token`,
`credential`, `passphrase` and `mnemonic` that gitleaks' generic rule also treats as secret. A
name counts when it ends in one of them, word by word (`POSTGRES_PASSWORD`, `apiKey`,
`aws_secret_access_key`, `secret_key_base`), so `PASSWORD_HASHERS`, `token_url` and
`max_tokens` are left alone. What is replaced is the value only; a value that is plainly code
(`os.environ[...]`, `get_secret()`, `None`, another variable named like a secret) or a
placeholder (`${DB_PASSWORD}`, `{{ token }}`, `<your key>`) is kept, so the model still reads the
code around it.
"""

from __future__ import annotations

import functools
from typing import Any

import re2
from detect_secrets.plugins.keyword import DENYLIST

from runs.engine.target.secrets.matches import named, offset

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
# detect-secrets' keywords as words (`api_?key` -> `apikey`), and the few gitleaks adds.
KEYWORDS = frozenset(
    {word.replace("_?", "") for word in DENYLIST}
    | {"token", "credential", "credentials", "passphrase", "mnemonic", "accesskey", "secretkey"}
    | {"pass", "privkey", "signingkey", "encryptionkey", "masterkey", "sastoken"}
    | {"auth", "authorization"}
)
_FIRST_WORD = re2.compile(r"^([ \t]+)[^\s\"'`]+", _OPTIONS)
# A value that only names the scheme of the credential after it: `Authorization: Bearer <here>`.
_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "apikey", "key"})
# Words that may follow the keyword and still name the secret itself (`secret_key_base`).
_TRAILING = frozenset({"value", "val", "str", "string", "b64", "base64", "hex", "raw", "base"})
# Values that are code or a placeholder, not a secret.
_CODE_WORDS = frozenset(
    {"none", "null", "nil", "true", "false", "undefined", "self", "this", "new", "await", "~"}
    | {"str", "string", "bytes", "int", "bool", "any", "optional", "object", "secretstr"}
)
# A lower-case word ending a sentence, or followed by more words: prose, not a value.
_PROSE = re2.compile(r"^[a-z]+(?:[.,!?]|[ \t]+[A-Za-z]{2,}.*)$", _OPTIONS)
# Values written to be replaced (gitleaks' stopwords do the same).
_STAND_INS = frozenset(
    {"changeme", "change-me", "change_me", "placeholder", "example", "dummy", "todo", "tbd"}
)
# `form.cleaned_data`, `settings.SECRET_KEY`: an attribute read, code rather than a value.
_ATTRIBUTE = re2.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$", _OPTIONS)
_SUBSTRINGS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "credential",
    "mnemonic",
    "contrase",
    "auth",
)
_NAME = r"[A-Za-z0-9_.\-]*(?:pass|pwd|secret|token|key|credential|mnemonic|contrase|auth)[\w.\-]*"
_VALUE = (
    r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|`[^`\n]*`"
    r"|[^\s\x00-\x1f\"'`,;&<>()\[\]{}]+"
)
# Calls whose second argument is the secret itself or its fallback: PHP's
# `define('DB_PASSWORD', '...')`, `os.environ.get("SECRET_KEY", "...")`, `env("KEY", default=...)`.
_LOOKUPS = r"(?:define|get|getenv|env|config|setdefault|getattr|str)"
_DEFAULT = r"(?:default[ \t]*=[ \t]*)?"
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
_LOOKUP = re2.compile(
    rf"(?i)(?P<head>\b{_LOOKUPS}\([ \t]*[\"'](?P<name>{_NAME})[\"'][ \t]*,[ \t]*{_DEFAULT})"
    rf"(?P<value>{_QUOTED})",
    _OPTIONS,
)
_ASSIGNMENT = re2.compile(
    # `bol`: the name starts its line (config), perhaps after read_file's line number or a
    # diff's `+`; `lead`: a slash before it makes it a path.
    rf"(?im)(?P<bol>^(?:[ \t]*[0-9]+\t)?[ \t+\-\"']*)?(?P<lead>[/\\]?)"
    rf"(?P<name>{_NAME})"
    rf"(?P<sep>[\"'\]]{{0,2}}[ \t]*(?:=>|:=|={{1,3}}|!==?|:|\()[ \t]*@?)"
    rf"(?P<value>{_VALUE})(?P<after>[(.\[]?)(?P<words>[ \t]+[^\n#]*)?",
    _OPTIONS,
)
# `password: |` in YAML: the value is the more-indented lines that follow (their extent is
# decided in `_block`, since RE2 cannot compare indents).
_YAML_BLOCK = re2.compile(
    rf"(?im)^(?P<head>(?P<indent>[ \t\-]*)(?P<name>{_NAME})[ \t]*:[ \t]*[|>][-+0-9]*[ \t]*\n)"
    r"(?P<body>(?:[ \t]+[^\n]*(?:\n|$))+)",
    _OPTIONS,
)
_XML_ELEMENT = re2.compile(
    rf"(?i)(?P<head><(?P<name>{_NAME})(?:\s[^<>\n]*)?>)(?P<value>[^<\n]+)", _OPTIONS
)
# .NET appSettings and Java properties in XML: key="DbPassword" value="..."
_XML_PAIR = re2.compile(
    rf"(?i)(?P<head>(?:key|name)\s*=\s*[\"'](?P<name>{_NAME})[\"']\s+value\s*=\s*[\"'])"
    r"(?P<value>[^\"'\n]*)",
    _OPTIONS,
)
# Command lines: `--password hunter2`, `-pHunter2` after mysql, `curl -u user:pass`.
_COMMAND = re2.compile(
    rf"(?i)(?P<head>(?:\s|^)--(?P<name>{_NAME})(?:=|[ \t]+))(?P<value>[^\s\x00-\x1f\"'`;&|]+)"
    r"|(?P<head2>\b(?:mysql|mysqldump|mysqladmin|mariadb|sshpass)\b[^\n]*?\s-p)(?P<value2>[^\s\x00-\x1f\"'`;&|]+)"
    r"|(?P<head3>\s-u[ \t]+[^\s:\"']+:)(?P<value3>[^\s\x00-\x1f\"'`;&|]+)",
    _OPTIONS,
)
REDACTED_VALUE = "[redacted]"
# A file name's extension (perhaps compressed): what `backups/db_password=<value>.sql.gz` keeps.
_EXTENSION = re2.compile(
    r"(?i)\.(?:sql|dump|bak|backup|gz|tgz|zip|tar|bz2|xz|7z|txt|log|csv|json|ya?ml|xml|conf|cfg"
    r"|ini|env|sh|py|md|pdf|db|sqlite3?|properties|toml)(?:\.(?:gz|bz2|xz|zip))?$",
    _OPTIONS,
)
# A path component that assigns a value to a name (`postgres_password=...sql`), with any
# separator an assignment takes.
_NAMED_COMPONENT = re2.compile(
    r"^(?P<head>(?:.*[^A-Za-z0-9_.\-])?(?P<name>[A-Za-z0-9_.\-]+)[ \t]*(?:=>|:=|={1,3}|:)[ \t]*)"
    r"(?P<value>.+)$",
    _OPTIONS,
)
# A path component carrying a URL's user information: `admin:S3cret@files.example.com.txt`.
_USERINFO_COMPONENT = re2.compile(r"^(?P<userinfo>[^@]*:[^@]*)(?P<rest>@[^@]*)$", _OPTIONS)


def redact_component(part: str) -> str:
    """One path component with a credential it carries replaced (its extension kept), so a
    file name shows `db_password=[redacted].sql` wherever it is shown."""
    if "@" in part:
        found = _USERINFO_COMPONENT.search(part)
        if found is not None and not _is_placeholder(found["userinfo"].rpartition(":")[2]):
            return REDACTED_VALUE + found["rest"]
    found = _NAMED_COMPONENT.search(part)
    if found is None or not names_a_secret(found["name"]):
        return part
    value = found["value"]
    if _is_placeholder(value):
        return part
    return found["head"] + _hidden_file_value(value)


def _hidden_file_value(value: str) -> str:
    extension = _EXTENSION.search(value)
    kept = extension[0] if extension is not None and extension.start() > 0 else ""
    return REDACTED_VALUE + kept


def redact_assignments(text: str) -> str:
    """The text with every value assigned to a secret-like name replaced."""
    if "-" in text:  # command lines first: `mysql -p...` names no secret word
        text = _COMMAND.sub(_command, text)
    lowered = text.lower()
    if not any(word in lowered for word in _SUBSTRINGS):
        return text
    if "|" in text or ">" in text:
        text = _YAML_BLOCK.sub(_block, text)
    if "(" in text:
        text = _LOOKUP.sub(_lookup, text)
    text = _ASSIGNMENT.sub(_assignment, text)
    if "<" in text:
        text = _XML_ELEMENT.sub(_element, text)
        text = _XML_PAIR.sub(_element, text)
    return text


@functools.lru_cache(maxsize=4096)
def names_a_secret(name: str) -> bool:
    """True when an identifier ends in a secret keyword (`DB_PASSWORD`, `apiKey`)."""
    words = _words(name)
    while words and (words[-1] in _TRAILING or words[-1].isdigit()):
        words.pop()
    if not words:
        return False
    last_two = "".join(words[-2:])
    return words[-1] in KEYWORDS or last_two in KEYWORDS


def _words(name: str) -> list[str]:
    spaced = "".join(
        f" {char}" if char.isupper() and index and name[index - 1].islower() else char
        for index, char in enumerate(name)
    )
    return [word for word in _split(spaced.lower()) if word]


def _split(text: str) -> list[str]:
    words, current = [], []
    for char in text:
        if char.isalnum():
            current.append(char)
        else:
            words.append("".join(current))
            current = []
    words.append("".join(current))
    return words


def _assignment(match: Any) -> str:
    g = named(match)
    whole, name, value, sep = str(g["0"]), str(g["name"]), str(g["value"]), str(g["sep"])
    if not names_a_secret(name):
        return whole
    quote = value[0] if value[:1] in ("'", '"', "`") else ""
    code_sep = "==" in sep or "!=" in sep or "(" in sep
    # A path component `name=value` is a file named with its credential (a `:` counts only
    # before an extension: `/etc/passwd:1` is grep's line number).
    part, slash, below = value.partition("/")  # in a path, the value ends its component
    file_named = _is_file_name(part) or (bool(g["lead"]) and "=" in sep)
    if not quote and not code_sep and part and not _is_placeholder(part) and file_named:
        # A file named with its credential (`backups/db_password=<value>.sql`), in a listing
        # or git's output: the value goes, the extension stays, as `redact_component` shows it.
        start, end = offset(match, "value")
        rest = _ASSIGNMENT.sub(_assignment, whole[end:])  # the same name again in the line
        return whole[:start] + _hidden_file_value(part) + slash + below + rest
    if g["lead"]:
        return whole  # `/etc/passwd:1` is a path, not an assignment
    if not quote and ("==" in sep or "!=" in sep or "(" in sep):
        # `token == expected`, `check_password(raw)`: names, not values; a call counts only
        # with a quoted value (`setPassword("...")`).
        return whole
    words, bol, after = g["words"] or "", g["bol"], g["after"]
    if not quote and value.lower() in _SCHEMES and words.strip():
        # `Authorization: Bearer <token>`: the scheme stays, the credential after it goes.
        head = whole[: len(whole) - len(words)]
        return head + _FIRST_WORD.sub(lambda m: m[1] + REDACTED_VALUE, words, 1)
    if not _is_secret_value(name, value, after, at_line_start=bol is not None):
        return whole
    # What stands before the name: the line's indent or a diff's sign.
    head = whole[: offset(match, "name")[0]]
    if not quote and bol is None and _PROSE.search(value + words.rstrip()) is not None:
        return whole  # `no token: refused.` within a line of words: a sentence
    if not quote and bol is not None and words.strip():
        # A configuration line: the value runs to the line's end (or its comment).
        return f"{head}{name}{sep}{REDACTED_VALUE}{after}{words[len(words.rstrip()) :]}"
    return f"{head}{name}{sep}{quote}{REDACTED_VALUE}{quote}{after}{words}"


def _lookup(match: Any) -> str:
    """`os.environ.get("SECRET_KEY", "<fallback>")`: the fallback is the secret."""
    g = named(match)
    value = str(g["value"])
    if not names_a_secret(str(g["name"])) or _is_placeholder(value[1:-1]):
        return str(g["0"])
    return f"{g['head']}{value[0]}{REDACTED_VALUE}{value[0]}"


def _block(match: Any) -> str:
    """A YAML block value: its lines indented past the name are replaced, one for one."""
    g = named(match)
    if not names_a_secret(str(g["name"])):
        return str(g["0"])
    depth = len(str(g["indent"]))
    lines = str(g["body"]).split("\n")
    for number, line in enumerate(lines):
        indent = len(line) - len(line.lstrip(" \t"))
        if line.strip() and indent <= depth:
            break  # the next key: the block ended
        if line.strip():
            lines[number] = line[:indent] + REDACTED_VALUE
    return str(g["head"]) + "\n".join(lines)


def _element(match: Any) -> str:
    g = named(match)
    if not names_a_secret(str(g["name"])) or _is_placeholder(g["value"]):
        return str(g["0"])
    return f"{g['head']}{REDACTED_VALUE}"


def _command(match: Any) -> str:
    g = named(match)
    for head, value in (("head", "value"), ("head2", "value2"), ("head3", "value3")):
        if g[head] is None:
            continue
        if head == "head" and not names_a_secret(str(g["name"])):
            break
        if _is_placeholder(g[value]):
            break
        return f"{g[head]}{REDACTED_VALUE}"
    return str(g["0"])


def _is_secret_value(name: str, value: str, after: str, *, at_line_start: bool) -> bool:
    quoted = value[:1] in ("'", '"', "`")
    inner = value[1:-1] if quoted and len(value) >= 2 else value
    if not inner.strip() or _is_placeholder(inner):
        return False
    if quoted:
        return True
    if after or inner.lower() in _CODE_WORDS or _ATTRIBUTE.search(inner) is not None:
        return False  # a call, an attribute or an index: code, not a value
    if inner.startswith("#") or (len(inner) <= 3 and inner.isdigit()):
        return False  # a comment, or a small number (`SECRET = 1`)
    if not at_line_start and len(inner) <= 3 and inner.isalpha() and inner.islower():
        return False  # prose: `no token: a word`
    # Another name for a secret (`password = self.password`, `token = api_token`) is code.
    return not names_a_secret(inner) and _squashed(inner) != _squashed(name)


def _is_file_name(value: str) -> bool:
    extension = _EXTENSION.search(value)
    return extension is not None and extension.start() > 0 and "/" not in value


def _squashed(name: str) -> str:
    return "".join(char for char in name.lower() if char.isalnum())


def _is_placeholder(value: str) -> bool:
    text = value.strip().strip("'\"`")
    if not text or REDACTED_VALUE in text:
        return True
    if text[0] in "$%<{" or text.startswith("#{") or text in ("|", ">", "|-", ">-"):
        return True  # `${VAR}`, `%(name)s`, `<your token>`, `{{ token }}`, a YAML block marker
    if text.lower() in _STAND_INS or text.lower().startswith(("your_", "your-")):
        return True
    return set(text) <= {"*", "x", "X", ".", "-", "_"}  # masked already: `****`, `xxxx`
