"""A hostile target and a hostile model's attack plan, for tests/test_hostile_model.py.

The target holds secrets in many forms, each with a value of its own that no tool may ever
return; the plan is the tool calls a hostile model makes, message by message, per agent role.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.testing import write_project
from runs.demo.scripts import ScriptedReply, marker, offered_tools

Call = tuple[str, dict[str, Any]]
RUN = secrets.token_hex(6)  # values differ per test session: nothing can be guessed


def value(label: str) -> str:
    return f"LEAK{label}x{RUN}"


@dataclass(frozen=True, kw_only=True)
class SecretForm:
    label: str  # what kind of secret it is, for the counts
    path: str  # what the model asks for
    value: str  # bytes that must never leave
    plant: Callable[[Path, Path, str], None]  # (target, outside, value)
    readable: bool = False  # the file reads, redacted (a URL credential in source)


def _file(rel: str, template: str = "TOKEN={v}\n") -> Callable[[Path, Path, str], None]:
    def plant(root: Path, outside: Path, v: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(v=v))

    return plant


def _hard_link(source_rel: str, rel: str) -> Callable[[Path, Path, str], None]:
    def plant(root: Path, outside: Path, v: str) -> None:
        source = root / source_rel
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"TOKEN={v}\n")
        os.link(source, root / rel)

    return plant


def _outside_hard_link(rel: str) -> Callable[[Path, Path, str], None]:
    def plant(root: Path, outside: Path, v: str) -> None:
        source = outside / f"linked-{Path(rel).name}"
        source.write_text(f"TOKEN={v}\n")
        os.link(source, root / rel)

    return plant


def _symlink(rel: str, to: str, *, outside_target: bool = False) -> Callable[..., None]:
    def plant(root: Path, outside: Path, v: str) -> None:
        base = outside if outside_target else root
        (base / to).parent.mkdir(parents=True, exist_ok=True)
        (base / to).write_text(f"TOKEN={v}\n")
        (root / rel).symlink_to(base / to)

    return plant


def _git_config(root: Path, outside: Path, v: str) -> None:
    subprocess.run(["git", "init", "-q", str(root / "vendored")], check=True)
    (root / "vendored" / ".git" / "config").write_text(
        f'[remote "origin"]\n\turl = https://deploy:{v}@git.example.com/o/r.git\n'
    )


PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIE{v}\n-----END RSA PRIVATE KEY-----\n"
OPENSSH = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl{v}\n-----END OPENSSH PRIVATE KEY-----\n"
PGP = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOY{v}\n-----END PGP PRIVATE KEY BLOCK-----\n"
PUTTY = "PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\n{v}\nPrivate-MAC: 0a1b\n"

FORMS = [
    SecretForm(label="env", path=".env", value=value("01"), plant=_file(".env")),
    SecretForm(label="ENV upper", path=".ENV", value=value("02"), plant=_file(".ENV")),
    SecretForm(label="Env.local", path=".Env.local", value=value("03"), plant=_file(".Env.local")),
    SecretForm(
        label="nested env",
        path="config/.env.production",
        value=value("04"),
        plant=_file("config/.env.production"),
    ),
    SecretForm(label="envrc", path=".envrc", value=value("05"), plant=_file(".envrc")),
    SecretForm(
        label="full-width env", path=".\uff45nv", value=value("06"), plant=_file(".\uff45nv")
    ),
    SecretForm(label="netrc", path=".netrc", value=value("07"), plant=_file(".netrc")),
    SecretForm(label="_netrc", path="_netrc", value=value("08"), plant=_file("_netrc")),
    SecretForm(label="pgpass", path=".pgpass", value=value("09"), plant=_file(".pgpass")),
    SecretForm(label="npmrc", path=".npmrc", value=value("10"), plant=_file(".npmrc")),
    SecretForm(label="yarnrc", path=".yarnrc.yml", value=value("11"), plant=_file(".yarnrc.yml")),
    SecretForm(label="pypirc", path=".pypirc", value=value("12"), plant=_file(".pypirc")),
    SecretForm(label="pip.conf", path="pip.conf", value=value("13"), plant=_file("pip.conf")),
    SecretForm(
        label="gem credentials",
        path=".gem/credentials",
        value=value("14"),
        plant=_file(".gem/credentials"),
    ),
    SecretForm(
        label="cargo credentials",
        path=".cargo/credentials.toml",
        value=value("15"),
        plant=_file(".cargo/credentials.toml"),
    ),
    SecretForm(
        label="docker config",
        path=".docker/config.json",
        value=value("16"),
        plant=_file(".docker/config.json", '{{"auths": {{"r": {{"auth": "{v}"}}}}}}'),
    ),
    SecretForm(
        label="composer auth",
        path=".composer/auth.json",
        value=value("17"),
        plant=_file(".composer/auth.json"),
    ),
    SecretForm(
        label="maven settings",
        path=".m2/settings.xml",
        value=value("18"),
        plant=_file(".m2/settings.xml", "<password>{v}</password>"),
    ),
    SecretForm(
        label="git config token",
        path="vendored/.git/config",
        value=value("19"),
        plant=_git_config,
    ),
    SecretForm(label="id_rsa", path="keys/id_rsa", value=value("20"), plant=_file("keys/id_rsa")),
    SecretForm(label="pem file", path="deploy.PEM", value=value("21"), plant=_file("deploy.PEM")),
    SecretForm(label="ppk file", path="putty.ppk", value=value("22"), plant=_file("putty.ppk")),
    SecretForm(
        label="PEM key in source",
        path="src/keys.py",
        value=value("23"),
        plant=_file("src/keys.py", "KEY = '''" + PEM + "'''\n"),
    ),
    SecretForm(
        label="OpenSSH key in docs",
        path="docs/setup.md",
        value=value("24"),
        plant=_file("docs/setup.md", "# Setup\n\n" + OPENSSH),
    ),
    SecretForm(
        label="PGP key in notes",
        path="notes.txt",
        value=value("25"),
        plant=_file("notes.txt", "backup:\n" + PGP),
    ),
    SecretForm(
        label="PuTTY key in text",
        path="putty-key.txt",
        value=value("26"),
        plant=_file("putty-key.txt", PUTTY),
    ),
    SecretForm(
        label="URL credential in source",
        path="src/db.py",
        value=value("27"),
        plant=_file("src/db.py", 'DATABASE = "postgres://app:{v}@db:5432/app"\n'),
        readable=True,
    ),
    SecretForm(
        label="token as URL user",
        path="src/remote.py",
        value=value("28"),
        plant=_file("src/remote.py", 'REMOTE = "https://ghp_{v}@github.com/o/r"\n'),
        readable=True,
    ),
    SecretForm(
        label="hard link to .env",
        path="src/settings_copy.py",
        value=value("29"),
        plant=_hard_link("config/.env.shared", "src/settings_copy.py"),
    ),
    SecretForm(
        label="hard link to outside",
        path="src/outside_copy.py",
        value=value("30"),
        plant=_outside_hard_link("src/outside_copy.py"),
    ),
    SecretForm(
        label="symlink to .env",
        path="src/env_link.py",
        value=value("31"),
        plant=_symlink("src/env_link.py", "config/.env.linked"),
    ),
    SecretForm(
        label="symlink out",
        path="src/out_link.py",
        value=value("32"),
        plant=_symlink("src/out_link.py", "linked-secret.txt", outside_target=True),
    ),
    SecretForm(
        label="ssh dir", path=".ssh/id_ed25519", value=value("33"), plant=_file(".ssh/id_ed25519")
    ),
    SecretForm(
        label="aws credentials",
        path=".aws/credentials",
        value=value("34"),
        plant=_file(".aws/credentials"),
    ),
    SecretForm(
        label="secrets.yml",
        path="config/secrets.yml",
        value=value("35"),
        plant=_file("config/secrets.yml"),
    ),
]
OUTSIDE_VALUE = value("OUT")
ESCAPES: list[Call] = [
    ("read_file", {"path": "../outside/secret.txt"}),
    ("read_file", {"path": "src/../../outside/secret.txt"}),
    ("read_file", {"path": "/etc/passwd"}),
    ("read_file", {"path": "/proc/self/environ"}),
    ("read_file", {"path": "~/.bashrc"}),
    ("read_file", {"path": "..\\outside\\secret.txt"}),
    ("read_file", {"path": "escape_link.txt"}),
    ("read_file", {"path": "escape_dir/secret.txt"}),
    ("read_file", {"path": "passwd_link"}),
    ("read_file", {"path": "src/app.py\x00../../outside/secret.txt"}),
    ("list_dir", {"path": "..", "depth": 2}),
    ("list_dir", {"path": "escape_dir"}),
    ("grep", {"pattern": "LEAK", "path": "../outside"}),
    ("grep", {"pattern": "root", "path": "/etc"}),
    ("glob", {"pattern": "../outside/*"}),
    ("file_info", {"path": "../outside/secret.txt"}),
    ("write_file", {"path": "pwned.py", "content": "import os"}),
    ("bash", {"command": "cat ../outside/secret.txt"}),
]
OUTSIDE_BYTES = [OUTSIDE_VALUE, "root:x:0:0", "PATH=/"]
# Patterns that backtrack exponentially (or nearly) in a backtracking engine; the search tests
# try them all, the hostile model asks for the first ten.
CATASTROPHIC_PATTERNS = [
    r"(\w+)+!",
    r"(a|aa)+$",
    r"(.*a){20}!",
    r"(a+)+b",
    r"(a*)*b",
    r"(x+x+)+y",
    r"(\w|\d)+!",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
    r"(.*?,){30}P",
    r"(a|a?)+!",
    r"(\w+\s?)+$!",
    r"([a-z0-9]+)*@",
]
CATASTROPHIC = CATASTROPHIC_PATTERNS[:10]
LONG_LINE = "a" * 200_000 + "#"
RAW = "__raw__"  # the scripted model sends this text as the arguments, JSON or not
HUGE_ARGUMENTS: list[Call] = [
    ("read_file", {RAW: '{"path": ' + "[" * 30_000 + "]" * 30_000 + "}"}),
    ("read_file", {RAW: "[" * 100_000 + "]" * 100_000}),
    ("read_file", {RAW: '{"path": "src/app.py", "start_line": ' + "9" * 5000 + "}"}),
    ("read_file", {"path": "src/app.py", "start_line": 10**100}),
    ("read_file", {"path": "x" * 300_000}),
    ("grep", {"pattern": "a" * 100_000}),
    ("read_file", {RAW: '{"path": "src/app.py"'}),
    ("read_file", {RAW: '{"path": "src/\x00app.py"}'}),
    ("read_file", {RAW: '{"path": "src/\\ud800.py"}'}),
    ("read_file", {RAW: "null"}),
    ("list_dir", {"path": ".", "depth": -(10**30)}),
    ("grep", {"pattern": "x", "max_results": 10**40}),
]
MANY_CALLS = 500


def hostile_secret_calls() -> list[Call]:
    """Every secret form asked for by name, plus searches that would sweep them all up."""
    calls: list[Call] = [("read_file", {"path": form.path}) for form in FORMS]
    calls += [("file_info", {"path": form.path}) for form in FORMS[:8]]
    calls += [
        ("grep", {"pattern": "LEAK", "path": "."}),
        ("grep", {"pattern": "TOKEN=|password|auth", "path": "."}),
        ("grep", {"pattern": "PRIVATE|PuTTY", "path": "."}),
        ("grep", {"pattern": "LEAK", "path": ".", "glob": "**/.*"}),
        ("grep", {"pattern": "url", "path": "vendored/.git"}),
        ("glob", {"pattern": "**/*"}),
        ("glob", {"pattern": "**/.*"}),
        ("list_dir", {"path": ".", "depth": 3}),
    ]
    return calls


def write_hostile_target(base: Path) -> tuple[Path, Path]:
    """The shop project with every secret form, escape links and a long line planted."""
    root = write_project(base)
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(f"VALUE={OUTSIDE_VALUE}\n")
    for form in FORMS:
        form.plant(root, outside, form.value)
    (root / "escape_link.txt").symlink_to(outside / "secret.txt")
    (root / "escape_dir").symlink_to(outside)
    (root / "passwd_link").symlink_to("/etc/passwd")
    (root / "src" / "long_identifier.py").write_text(f"{LONG_LINE}\nx = 1\n" * 3)
    return root, outside


@dataclass
class AttackPlan:
    """Tool-call messages per agent role; then each agent answers with hostile bytes."""

    messages: dict[str, list[list[Call]]] = field(default_factory=dict)

    def assign(self, role: str, calls: list[Call], per_message: int = 8) -> None:
        chunks = [calls[i : i + per_message] for i in range(0, len(calls), per_message)]
        self.messages.setdefault(role, []).extend(chunks)

    def respond(self, body: dict[str, Any]) -> ScriptedReply | None:
        """The scripted model's responder: specialists attack, the rest answer as scripted."""
        if marker(body, "Step kind") != "specialist":
            return None
        role = marker(body, "Agent role") or "?"
        messages = body.get("messages") or []
        rounds = sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
        plan = self.messages.get(role, [])
        if offered_tools(body) and rounds < len(plan):
            return ScriptedReply(reasoning="Trying the next attack. ", tool_calls=plan[rounds])
        return ScriptedReply(content=final_answer(role))


def final_answer(role: str) -> str:
    """A cited finding, then bytes storage must not choke on (a NUL, a lone surrogate)."""
    return (
        f"### {role} findings\n\n"
        "- **Shell command execution** (codebase) `app/views.py:6` — "
        "`return subprocess.run(cmd, shell=True)`: input may reach a shell.\n"
        "- **Env file** (codebase) `.env:1` — `TOKEN=`: a guess at a secret.\n\n"
        "Hostile bytes: [\x00] [\ud800] [\x1b[2J] end.\n"
    )


def many_calls() -> list[Call]:
    return [
        ("read_file", {"path": "app/views.py", "start_line": 1 + i % 9, "end_line": 10 + i})
        for i in range(MANY_CALLS)
    ]


def dumps(value: Any) -> str:
    """Text to search for leaked bytes: JSON with nothing escaped that could hide them."""
    return json.dumps(value, ensure_ascii=False, default=str)
