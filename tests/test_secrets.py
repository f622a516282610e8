"""The one rule for what is secret: names in any spelling, keys in any armour, URL credentials."""

from __future__ import annotations

import pytest

from runs.engine.target.secrets import REDACTED_CREDENTIAL, has_private_key, is_secret_name, redact

SECRET_PATHS = [
    ".env",
    ".ENV",
    ".Env.local",
    "config/.env.production",
    ".env-staging",
    "deploy/prod.env",
    ".envrc",
    ".\uff45nv",  # a full-width e
    ".env ",  # a trailing space
    ".env.",  # a trailing dot
    ".netrc",
    "_netrc",
    ".pgpass",
    ".npmrc",
    ".yarnrc.yml",
    ".pypirc",
    "pip.conf",
    ".gem/credentials",
    ".cargo/credentials",
    "home/.cargo/credentials.toml",
    ".docker/config.json",
    ".composer/auth.json",
    ".m2/settings.xml",
    ".git-credentials",
    ".git/config",
    ".git",
    "vendor/lib/.git/config",
    ".ssh/config",
    ".aws/credentials",
    ".kube/config",
    "keys/id_rsa",
    "ID_ED25519",
    "server.PEM",
    "tls/server.key",
    "putty.ppk",
    "store.jks",
    "credentials-prod.json",
    "config/secrets.yml",
    "terraform.tfstate",
]
ORDINARY_PATHS = [
    "src/app.py",
    ".env.example",
    ".ENV.SAMPLE",
    "keys/id_rsa.pub",
    "README.md",
    "environment.py",
    "docs/env.md",
    ".github/workflows/ci.yml",
    "gitconfig.md",
    "settings.xml",
    "credentials.py",
    ".",
]
KEY_BLOCKS = {
    "pem rsa": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "pkcs8": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\n-----END PRIVATE KEY-----",
    "encrypted pkcs8": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkq\n-----END ENCRYPTED PRIVATE KEY-----",
    "ec": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----",
    "openssh": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----",
    "pgp": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----",
    "ssh2": "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nP2/56wAAA\n---- END SSH2 ENCRYPTED PRIVATE KEY ----",
    "putty": "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\nAAAAIIx\nPrivate-MAC: 0a1b2c",
    "age": "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS",
    "lower case": "-----begin openssh private key-----\nb3BlbnNzaC1rZXk\n-----end openssh private key-----",
}
KEY_MATERIAL = [
    "MIIEowIBAAKCAQEA",
    "MIIEvQIBADANBgkq",
    "MIIFHDBOBgkq",
    "MHcCAQEEIB",
    "b3BlbnNzaC1rZXk",
    "lQOYBF",
    "P2/56wAAA",
    "AAAAIIx",
    "QYQSZQGPQYQSZQGP",
]


@pytest.mark.parametrize("path", SECRET_PATHS)
def test_it_treats_every_spelling_of_a_secret_file_as_secret(path: str):
    assert is_secret_name(path)


@pytest.mark.parametrize("path", ORDINARY_PATHS)
def test_it_lets_ordinary_files_examples_and_public_keys_through(path: str):
    assert not is_secret_name(path)


def test_the_rule_covers_at_least_thirty_five_secret_spellings():
    print(f"{len(SECRET_PATHS)} secret paths, {len(ORDINARY_PATHS)} ordinary ones")
    assert len(SECRET_PATHS) >= 35


@pytest.mark.parametrize("armour", sorted(KEY_BLOCKS))
def test_it_finds_a_private_key_in_every_armour_inside_an_ordinary_file(armour: str):
    text = f"# settings\nDEBUG = False\nKEY = '''{KEY_BLOCKS[armour]}'''\n"
    assert has_private_key(text)
    assert has_private_key(text.encode())
    redacted = redact(text)
    assert "[private key redacted]" in redacted
    assert not any(material in redacted for material in KEY_MATERIAL), redacted
    assert redacted.startswith("# settings\nDEBUG = False\n")


def test_public_keys_and_certificates_are_not_private_keys():
    assert not has_private_key("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----")
    assert not has_private_key("-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----")
    assert not has_private_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 user@host")


def test_a_key_block_cut_off_before_its_end_is_redacted_to_the_end_line_for_line():
    """A truncated diff or a partial read still shows no key material, and keeps its lines."""
    text = "before\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\nmore"
    assert redact(text) == "before" + "\n[private key redacted]" * 3


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("origin https://alice:ghp_TOKEN1234@github.com/x.git", "ghp_TOKEN1234"),
        ("url = https://x-access-token:s3cr3t@github.com/o/r", "s3cr3t"),
        ("DB=postgres://app:pa55word@db:5432/app", "pa55word"),
        ("REDIS=redis://:only-a-password@cache:6379/0", "only-a-password"),
        ("mongodb+srv://u:p%40ss@cluster0.example.net/db", "p%40ss"),
        ("jdbc:mysql://root:rootpw@localhost/app", "rootpw"),
        ("https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r", "ghp_abcdefghij"),
        ("amqp://guest:with@at@rabbit/vhost", "with@at"),
        ("'https://user:tok@host'", "tok@"),
    ],
)
def test_credentials_in_urls_are_redacted_wherever_they_appear(text: str, leaked: str):
    redacted = redact(text)
    assert leaked not in redacted
    assert REDACTED_CREDENTIAL in redacted


def test_plain_urls_and_user_names_are_left_alone():
    text = "see https://example.com/a?b=c and ssh://git@github.com/o/r.git, mail a@b.c"
    assert redact(text) == text


def test_redaction_takes_text_that_is_not_valid_utf8():
    assert redact("x\udcff https://u:p@h") == "x\\udcff https://[redacted]@h"


def test_redaction_of_hostile_text_finishes():
    """Many unterminated schemes, key headers and at-signs: RE2 keeps it linear."""
    hostile = ("a://" + "b" * 50 + ":" + "@" * 3) * 20_000 + "-----BEGIN " * 20_000
    assert isinstance(redact(hostile), str)
    assert isinstance(is_secret_name("a/" * 10_000 + ".env"), bool)


@pytest.mark.django_db
def test_the_exports_and_the_chat_redact_whatever_reached_the_report(alice, finished_run):
    """Defence in depth: a credential or key in a step's output or the report never leaves."""
    from runs.models import ChatMessage
    from tests.test_pane import client_for

    leak = "https://deploy:exp0rt-TOKEN@git.example.com/r " + KEY_BLOCKS["openssh"]
    finished_run.report += f"\n\n{leak}\n"
    finished_run.save()
    finished_run.steps.filter(key="security").update(output=leak)
    client = client_for(alice)
    md = client.get(f"/runs/{finished_run.id}/export.md").content.decode()
    js = client.get(f"/runs/{finished_run.id}/export.json").content.decode()
    client.post(f"/runs/{finished_run.id}/send-to-chat/")
    chat = ChatMessage.objects.get(run=finished_run).text
    for text in (md, js, chat):
        assert "exp0rt-TOKEN" not in text and "b3BlbnNzaC1rZXk" not in text
        assert "[redacted]" in text and "[private key redacted]" in text
