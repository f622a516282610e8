"""Hostile git repositories, built with the real `git` binary, for the git tools' attack tests.

`command_repo` configures every mechanism through which a repository can make git run a
command; each command only touches a marker file named after its mechanism, so a test counts
what ran by listing the marker folder. `fifo_repo` names FIFOs wherever config can name a file:
opening one blocks, so a reader that opened any would stall. `secret_repo` holds secrets in
every form the tools must never pass on.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
HOOKS = (
    "pre-commit",
    "post-commit",
    "post-checkout",
    "post-index-change",
    "reference-transaction",
    "pre-auto-gc",
    "post-rewrite",
    "fsmonitor-watchman",
    "pre-push",
    "post-merge",
)


def git(root: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    """Run the real git as a developer would, with a fixed identity."""
    done = subprocess.run(
        ["git", "-c", "user.email=dev@example.com", "-c", "user.name=Dev", *args],
        cwd=root,
        check=check,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    return done.stdout.decode("utf-8", "replace")


def markers(folder: Path) -> list[str]:
    """What ran: the marker files the hostile commands left."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("ran-"))


def _command(marker_dir: Path, name: str) -> str:
    """A program that leaves `ran-<name>`, whether git runs it directly or through a shell."""
    program = marker_dir.parent / "bin" / name
    program.parent.mkdir(exist_ok=True)
    program.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker_dir / ('ran-' + name)))}\n")
    program.chmod(0o755)
    return str(program)


@dataclass(frozen=True, kw_only=True)
class CommandRepo:
    root: Path
    marker_dir: Path
    mechanisms: tuple[str, ...]  # each one sets up at least one way to run a command
    signed: str  # a commit carrying a signature, so signature checking would call gpg


def command_repo(base: Path) -> CommandRepo:
    """A repository whose config, attributes and hooks try every way to run a command."""
    root, marker_dir = base / "target", base / "markers"
    for folder in (root / "sub", marker_dir):
        folder.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("alpha\nbeta\n")
    (root / "b.md").write_text("# title\nbody\n")
    (root / "c.bin").write_bytes(b"\x00\x01binary")
    (root / "sub" / "d.txt").write_text("delta\n")
    (root / "e.cfg").write_text("epsilon\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    (root / "a.txt").write_text("alpha\ngamma\n")
    (root / "b.md").write_text("# title\nchanged body\n")
    git(root, "commit", "-qam", "second")
    signed = _signed_commit(root)
    # Attributes that route every file through the hostile drivers.
    (root / ".gitattributes").write_text(
        "*.txt filter=cs diff=tc merge=md\n*.md filter=proc diff=cmd\n"
        "*.bin diff=tc filter=cs\nsub/* filter=inc diff=inc\n"
    )
    info = root / ".git" / "info"
    info.mkdir(exist_ok=True)
    (info / "attributes").write_text("*.cfg filter=info diff=info\n")
    keys = {
        "filter.cs.clean": "filter-clean",
        "filter.cs.smudge": "filter-smudge",
        "filter.cs.required": None,
        "filter.proc.process": "filter-process",
        "filter.info.clean": "info-attributes-filter",
        "diff.info.textconv": "info-attributes-textconv",
        "diff.tc.textconv": "diff-textconv",
        "diff.tc.cachetextconv": None,
        "diff.cmd.command": "diff-command",
        "diff.external": "diff-external",
        "merge.md.driver": "merge-driver",
        "core.pager": "core-pager",
        "pager.log": "pager-log",
        "pager.show": "pager-show",
        "pager.diff": "pager-diff",
        "pager.blame": "pager-blame",
        "core.askPass": "askpass",
        "core.sshCommand": "ssh-command",
        "core.editor": "editor",
        "sequence.editor": "sequence-editor",
        "core.alternateRefsCommand": "alternate-refs-command",
        "credential.helper": "credential-helper",
        "gpg.program": "gpg-program",
        "gpg.ssh.program": "gpg-ssh-program",
        "gpg.x509.program": "gpg-x509-program",
        "uploadpack.packObjectsHook": "pack-objects-hook",
        "core.gitProxy": "git-proxy",
        "remote.origin.uploadpack": "remote-uploadpack",
        "alias.log": "alias-log",
        "submodule.sub.update": "submodule-update",
    }
    for key, name in keys.items():
        value = "true" if name is None else _command(marker_dir, name)
        if key in ("submodule.sub.update", "alias.log"):
            value = "!" + value
        git(root, "config", key, value)
    git(root, "config", "log.showSignature", "true")
    git(root, "config", "gpg.format", "openpgp")
    # fsmonitor: a hook script, the form git runs directly.
    git(root, "config", "core.fsmonitor", _command(marker_dir, "fsmonitor"))
    # Hooks, both where git looks by default and through core.hooksPath.
    hooks_elsewhere = base / "hooks"
    for folder in (root / ".git" / "hooks", hooks_elsewhere):
        folder.mkdir(exist_ok=True)
        for hook in HOOKS:
            script = folder / hook
            script.write_text(
                f"#!/bin/sh\ntouch {shlex.quote(str(marker_dir / ('ran-hook-' + hook)))}\n"
            )
            script.chmod(0o755)
    git(root, "config", "core.hooksPath", str(hooks_elsewhere))
    # include and includeIf: files outside the target that configure more commands.
    included = base / "included.cfg"
    included.write_text(
        f'[filter "inc"]\n\tclean = {_command(marker_dir, "include-filter")}\n'
        f'[diff "inc"]\n\ttextconv = {_command(marker_dir, "include-textconv")}\n'
    )
    conditional = base / "conditional.cfg"
    conditional.write_text(f"[core]\n\tpager = {_command(marker_dir, 'includeif-pager')}\n")
    git(root, "config", "include.path", str(included))
    git(root, "config", f"includeIf.gitdir:{root}/.git.path", str(conditional))
    git(root, "config", "includeIf.onbranch:main.path", str(conditional))
    for marker in marker_dir.iterdir():
        marker.unlink()  # building ran some of them already; count from zero
    # A dirty working tree, so working-tree comparisons have something to filter.
    (root / "a.txt").write_text("alpha\ngamma\ndirty\n")
    (root / "b.md").write_text("# title\ndirty\n")
    (root / "sub" / "d.txt").write_text("delta\ndirty\n")
    (root / "e.cfg").write_text("epsilon\ndirty\n")
    mechanisms = (
        *(name for name in keys.values() if name is not None),
        "fsmonitor",
        "hooks",
        "hooksPath",
        "include.path",
        "includeIf",
        "info/attributes",
        "signed commit (log.showSignature)",
    )
    return CommandRepo(root=root, marker_dir=marker_dir, mechanisms=mechanisms, signed=signed)


def _signed_commit(root: Path) -> str:
    """A commit with a gpgsig header on a branch named `signed`: verifying it calls gpg."""
    head = git(root, "rev-parse", "HEAD").strip()
    tree = git(root, "rev-parse", "HEAD^{tree}").strip()
    body = (
        f"tree {tree}\nparent {head}\n"
        "author Dev <dev@example.com> 1700000000 +0000\n"
        "committer Dev <dev@example.com> 1700000000 +0000\n"
        "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n"
        "\nsigned commit\n"
    )
    done = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        cwd=root,
        input=body.encode(),
        capture_output=True,
        check=True,
    )
    oid = done.stdout.decode().strip()
    git(root, "branch", "signed", oid)
    return oid


def fifo_repo(base: Path) -> tuple[Path, list[str]]:
    """A repository whose config and files name FIFOs; returns (root, what names a FIFO)."""
    root, pipes = base / "target", base / "pipes"
    root.mkdir(parents=True)
    pipes.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("one\n")
    (root / ".mailmap").write_text("Dev <dev@example.com>\n")
    (root / ".gitattributes").write_text("*.txt text\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    (root / "a.txt").write_text("two\n")
    named = {
        "include.path": "include",
        "blame.ignoreRevsFile": "ignore-revs",
        "core.attributesFile": "attributes",
        "core.excludesFile": "excludes",
        "mailmap.file": "mailmap",
        "commit.template": "template",
        "core.hooksPath": "hooks",
    }
    lines = []
    for key, name in named.items():
        os.mkfifo(pipes / name)
        section, _, option = key.rpartition(".")
        lines.append(f"[{section}]\n\t{option} = {pipes / name}\n")
    # Written directly: git itself would block on the FIFO include from here on.
    with (root / ".git" / "config").open("a") as config:
        config.write("".join(lines))
    for inside in (".git/info/attributes", ".git/info/exclude", ".git/info/grafts"):
        path = root / inside
        path.parent.mkdir(exist_ok=True)
        path.unlink(missing_ok=True)
        os.mkfifo(path)
    # Tracked files swapped for FIFOs in the working tree.
    for tracked in (".gitattributes", ".mailmap"):
        (root / tracked).unlink()
        os.mkfifo(root / tracked)
    return root, [*named, ".git/info/attributes", ".git/info/exclude", ".git/info/grafts",
                  "a FIFO .gitattributes", "a FIFO .mailmap"]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SecretRepo:
    root: Path
    secrets: tuple[str, ...]  # strings that must never appear in any answer
    forms: tuple[tuple[str, dict[str, object]], ...]  # (tool, arguments) that try to leak them


PEM_BODY = "MIIEowIBAAKCAQEAsecretpembody0123456789"
OPENSSH_BODY = "b3BlbnNzaC1rZXktdjEAAAAAsecretopensshbody"
PGP_BODY = "lQOYBGSecretPgpPrivateBody0123456789"
PUTTY_BODY = "AAAAB3NzaC1yc2EsecretPuttyPrivateLines"


def secret_repo(base: Path) -> SecretRepo:
    """Secrets by name, by content and in URLs, in history and in the working tree."""
    root = base / "target"
    (root / "config").mkdir(parents=True)
    (root / ".ssh").mkdir()
    git(root, "init", "-q", "-b", "main")
    by_name = {
        ".env": "ENV_TOKEN_7f3a",
        ".env.production": "ENV_PROD_TOKEN_91bc",
        "config/secrets.yml": "YML_SECRET_55d1",
        "config/credentials.json": "CREDENTIALS_JSON_8e2f",
        "server.pem": "PEM_FILE_SECRET_3a9d",
        "tls.key": "KEY_FILE_SECRET_6b1c",
        "id_rsa": "ID_RSA_SECRET_0c4e",
        ".ssh/config": "SSH_DIR_SECRET_2d7a",
        ".netrc": "NETRC_SECRET_9f0b",
        ".npmrc": "NPMRC_SECRET_4e6c",
        ".pypirc": "PYPIRC_SECRET_1a8d",
        ".pgpass": "PGPASS_SECRET_7c3e",
        ".git-credentials": "GIT_CREDENTIALS_SECRET_5b2f",
        "vault.kdbx": "KDBX_SECRET_8d4a",
        "store.p12": "P12_SECRET_3f6b",
    }
    for path, token in by_name.items():
        (root / path).write_text(f"value={token}\n")
    by_content = {
        "notes.txt": "intro\n-----BEGIN RSA PRIVATE KEY-----\n"
        f"{PEM_BODY}\n{PEM_BODY[::-1]}\n-----END RSA PRIVATE KEY-----\noutro\n",
        "deploy/ssh.txt": "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        f"{OPENSSH_BODY}\n-----END OPENSSH PRIVATE KEY-----\n",
        "deploy/signing.asc": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n"
        f"{PGP_BODY}\n-----END PGP PRIVATE KEY BLOCK-----\n",
        "deploy/putty.txt": "PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\n"
        f"Private-Lines: 1\n{PUTTY_BODY}\nPrivate-MAC: 0123abcd\n",
        "ci.yml": "remote: https://deploy:URL_PASSWORD_6e1d@git.example.com/repo.git\n"
        "mirror: https://ghp_URLTOKENONLY0123456789abcdef@github.example/repo\n",
    }
    for path, text in by_content.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "main.py").write_text("print('hello')\n")
    git(root, "add", "-A")
    git(
        root,
        "commit",
        "-qm",
        "add everything (push to https://ci:COMMIT_MSG_TOKEN_2b9c@ci.example)",
    )
    # A second commit changing every secret, so patches between commits would carry them.
    for path, token in by_name.items():
        (root / path).write_text(f"value={token}\nrotated={token}_v2\n")
    (root / "notes.txt").write_text(by_content["notes.txt"].replace("outro", "outro v2"))
    (root / "main.py").write_text("print('hello again')\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "rotate")
    # A commit touching only secrets.
    (root / ".env").write_text("value=ENV_TOKEN_7f3a\nlast=ENV_ONLY_COMMIT_4d2a\n")
    git(root, "commit", "-qam", "only the env file")
    env_blob = git(root, "rev-parse", "HEAD:.env").strip()
    config_tree = git(root, "rev-parse", "HEAD:config").strip()
    ssh_tree = git(root, "rev-parse", "HEAD:.ssh").strip()
    git(root, "tag", "ssh-tree", ssh_tree)  # a tag naming a subtree: `config` inside is secret
    git(root, "tag", "env-blob", env_blob)  # a tag naming a secret blob
    git(root, "tag", "-a", "-m", "annotated", "env-blob-annotated", env_blob)
    # Working-tree changes to secrets, and links that lead to them.
    (root / ".env").write_text("value=WORKTREE_ENV_TOKEN_3c8e\n")
    (root / "config" / "secrets.yml").write_text("value=WORKTREE_YML_TOKEN_0a5f\n")
    (root / "notes.txt").write_text(by_content["notes.txt"].replace("intro", "intro edited"))
    (root / "env-link").symlink_to(".env")
    (root / "config-link").symlink_to("config")
    secrets = (
        *by_name.values(),
        "ENV_ONLY_COMMIT_4d2a",
        "WORKTREE_ENV_TOKEN_3c8e",
        "WORKTREE_YML_TOKEN_0a5f",
        PEM_BODY,
        PEM_BODY[::-1],
        OPENSSH_BODY,
        PGP_BODY,
        PUTTY_BODY,
        "URL_PASSWORD_6e1d",
        "ghp_URLTOKENONLY0123456789abcdef",
        "COMMIT_MSG_TOKEN_2b9c",
    )
    forms: list[tuple[str, dict[str, object]]] = [
        ("git_log", {}),
        ("git_log", {"path": ".env"}),
        ("git_log", {"max_count": 100}),
        ("git_show", {"rev": "HEAD"}),
        ("git_show", {"rev": "HEAD~1"}),
        ("git_show", {"rev": "HEAD~2"}),
        ("git_show", {"rev": env_blob}),
        ("git_show", {"rev": env_blob[:10]}),
        ("git_show", {"rev": config_tree}),
        ("git_show", {"rev": "env-blob"}),
        ("git_show", {"rev": "env-blob-annotated"}),
        ("git_show", {"rev": "HEAD:.env"}),
        ("git_show", {"rev": "HEAD:config/secrets.yml"}),
        ("git_show", {"rev": "HEAD^{tree}"}),
        ("git_show", {"rev": "HEAD", "path": ".env"}),
        ("git_show", {"rev": "HEAD", "path": "./.env"}),
        ("git_show", {"rev": "HEAD", "path": "config/../.env"}),
        ("git_show", {"rev": "HEAD", "path": "env-link"}),
        ("git_show", {"rev": "HEAD", "path": "config-link/secrets.yml"}),
        ("git_show", {"rev": "HEAD", "path": "config"}),
        ("git_show", {"rev": "HEAD", "path": "config/secrets.yml"}),
        ("git_show", {"rev": "HEAD", "path": ".ssh/config"}),
        ("git_show", {"rev": "HEAD", "path": "notes.txt"}),
        ("git_show", {"rev": "HEAD", "path": "deploy/signing.asc"}),
        ("git_show", {"rev": "HEAD", "path": "deploy/putty.txt"}),
        ("git_show", {"rev": "HEAD", "path": "ci.yml"}),
        ("git_show", {"rev": "HEAD", "path": ":(glob)**/.env"}),
        ("git_show", {"rev": "env-blob", "path": ".env"}),
        ("git_show", {"rev": EMPTY_TREE}),
        ("git_blame", {"path": ".env"}),
        ("git_blame", {"path": "env-link"}),
        ("git_blame", {"path": "notes.txt"}),
        ("git_blame", {"path": "notes.txt", "start_line": 3, "end_line": 4}),
        ("git_blame", {"path": "deploy/ssh.txt", "start_line": 2, "end_line": 2}),
        ("git_blame", {"path": "ci.yml"}),
        ("git_blame", {"path": "config/secrets.yml"}),
        ("git_diff", {}),
        ("git_diff", {"path": "."}),
        ("git_diff", {"path": ".env"}),
        ("git_diff", {"path": "env-link"}),
        ("git_diff", {"path": "config"}),
        ("git_diff", {"path": "config-link"}),
        ("git_diff", {"path": "notes.txt"}),
        ("git_diff", {"rev_from": "HEAD~2"}),
        ("git_diff", {"rev_from": EMPTY_TREE}),
        ("git_diff", {"rev_from": EMPTY_TREE, "path": ".env"}),
        ("git_diff", {"rev_from": EMPTY_TREE, "rev_to": "HEAD"}),
        ("git_diff", {"rev_from": EMPTY_TREE, "rev_to": "HEAD", "path": "config"}),
        ("git_diff", {"rev_from": EMPTY_TREE, "rev_to": "HEAD", "path": "deploy"}),
        ("git_diff", {"rev_from": "HEAD~2", "rev_to": "HEAD"}),
        ("git_diff", {"rev_from": "HEAD~1", "rev_to": "HEAD"}),
        ("git_diff", {"rev_from": "HEAD", "rev_to": EMPTY_TREE}),
        ("git_diff", {"rev_from": "env-blob"}),
        ("git_diff", {"rev_from": "env-blob", "rev_to": "HEAD"}),
        ("git_diff", {"rev_from": config_tree, "rev_to": EMPTY_TREE}),
        ("git_diff", {"rev_from": ssh_tree, "rev_to": EMPTY_TREE}),
        ("git_diff", {"rev_from": "ssh-tree"}),
        ("git_show", {"rev": ssh_tree, "path": "config"}),
        ("git_show", {"rev": "ssh-tree", "path": "config"}),
        ("git_show", {"rev": ssh_tree}),
        ("git_diff", {"rev_from": "HEAD~2", "rev_to": "HEAD", "path": ":(exclude)main.py"}),
    ]
    return SecretRepo(root=root, secrets=secrets, forms=tuple(forms))
