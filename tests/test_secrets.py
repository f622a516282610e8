"""The one rule for what is secret: names in any spelling, keys in any armour, URL credentials."""

from __future__ import annotations

import base64

import pytest

from runs.engine.target.secrets import (
    REDACTED_CREDENTIAL,
    has_private_key,
    is_secret_name,
    readable_contents,
    redact,
    redact_name,
    shown_name,
)

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
def test_the_exports_and_the_chat_redact_whatever_reached_the_report(
    client_for, alice, finished_run
):
    """Defence in depth: a credential or key in a step's output or the report never leaves."""
    from runs.models import ChatMessage

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


# --- the rule built on detect-secrets: every form the issue lists -----------------------------

ASSIGNMENTS = {
    'SECRET_KEY = "django-insecure-abc123"': ('SECRET_KEY = "[redacted]"', "abc123"),
    "POSTGRES_PASSWORD: supersecret": ("POSTGRES_PASSWORD: [redacted]", "supersecret"),
    "  - POSTGRES_PASSWORD=supersecret": ("  - POSTGRES_PASSWORD=[redacted]", "supersecret"),
    "spring.datasource.password=s3cr3t": ("spring.datasource.password=[redacted]", "s3cr3t"),
    "    token: kube-tok-1": ("    token: [redacted]", "kube-tok-1"),
    "export GITHUB_TOKEN=abc123def": ("export GITHUB_TOKEN=[redacted]", "abc123def"),
    '{"password": "a\\"b-json"}': ('{"password": "[redacted]"}', "b-json"),
    "apiKey: 'k-998'": ("apiKey: '[redacted]'", "k-998"),
    "AccountKey=abc+/==;Endpoint=x": ("AccountKey=[redacted];Endpoint=x", "abc+/=="),
    "<password>hunter2</password>": ("<password>[redacted]</password>", "hunter2"),
    "mysql -u root -pHunter2 db": ("mysql -u root -p[redacted] db", "Hunter2"),
    "run --password=hunter2 now": ("run --password=[redacted] now", "hunter2"),
    "define('DB_PASSWORD', 'php-pw-1');": ("define('DB_PASSWORD', '[redacted]');", "php-pw-1"),
    'user.setPassword("java-pw");': ('user.setPassword("[redacted]");', "java-pw"),
    ":password => 'rb-pw'": (":password => '[redacted]'", "rb-pw"),
    '"Server=x;Password=cs-pw;"': ('"Server=x;Password=[redacted];"', "cs-pw"),
    'curl -H "Authorization: Basic dXNlcjpwYXNz" u': (
        'curl -H "Authorization: Basic [redacted]" u',
        "dXNlcjpwYXNz",
    ),
    "db:\n  password: correct horse battery staple # prod": (
        "db:\n  password: [redacted] # prod",
        "horse",
    ),
    'SECRET_KEY = os.environ.get("SECRET_KEY", "fallback-7")': (
        'SECRET_KEY = os.environ.get("SECRET_KEY", "[redacted]")',
        "fallback-7",
    ),
    "stringData:\n  password: |\n    block-pw-1\n    block-pw-2\n  user: bob": (
        "stringData:\n  password: |\n    [redacted]\n    [redacted]\n  user: bob",
        "block-pw",
    ),
    "PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=": (
        "PrivateKey = [redacted]",
        "yAnz5TF",
    ),
}
# Code that names secrets without holding one: left exactly as written.
CODE = [
    'SECRET_KEY = env("SECRET_KEY")',
    "password = form.cleaned_data",
    "def login(password: str, token: str | None = None) -> None:",
    "    return check(password=password)",
    'PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]',
    'token_url = "https://auth.example.com/token"',
    "max_tokens = 4096",
    "API_TOKEN=changeme",
    'password: "${DB_PASSWORD}"',
    "secret = None",
    "if token == expected:",
    "check_password(raw)",
    'AUTH_USER_MODEL = "accounts.User"',
    '"""Anonymous: no token: refused."""',
    "see `/etc/passwd:1`",
    'return f"postgresql://{auth}@{host}/db"',
]


@pytest.mark.parametrize("line", sorted(ASSIGNMENTS))
def test_a_value_assigned_to_a_secret_name_is_replaced_and_the_name_kept(line: str):
    expected, secret = ASSIGNMENTS[line]
    assert redact(line) == expected
    assert secret not in redact(line)


@pytest.mark.parametrize("line", CODE)
def test_code_that_only_names_a_secret_is_left_as_written(line: str):
    assert redact(line) == line


TOKENS = [
    "AKIAQ7EXAMPLE3KEY7ZZ",
    "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "glpat-abcdefghij0123456789",
    "xoxb-1234567890-abcdefghijkl",
    "sk_live_" + "a1B2c3D4" * 3,
    "AIza" + "b" * 35,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "SG." + "a" * 22 + "." + "b" * 43,
    "npm_" + "c" * 36,
    "hvs." + "d" * 24,
]


@pytest.mark.parametrize("token", TOKENS)
def test_a_token_of_a_known_shape_is_replaced_wherever_it_stands(token: str):
    for text in (f"x {token} y", f"call('{token}')", f"# {token}"):
        assert token[8:] not in redact(text), text


URL_FORMS = {
    "postgres://app:p#ss@db/app": "p#ss",
    "https://app:pa/ss@h/x": "pa/ss",
    "https://t0ken@github.com/o/r": "t0ken",
    '"https:\\/\\/u:js0n@host"': "js0n",
    "https://u:un1\\u0040host": "un1",
    "next=https%3A%2F%2Fu%3Apct1%40host": "pct1",
    "next=https%253A%252F%252Fu%253Apct2%2540host": "pct2",
}


@pytest.mark.parametrize("url", sorted(URL_FORMS))
def test_url_credentials_are_replaced_in_every_encoding(url: str):
    assert URL_FORMS[url] not in redact(url)
    assert REDACTED_CREDENTIAL in redact(url)


def test_an_at_sign_in_a_path_after_a_host_and_port_is_not_a_credential():
    text = "see https://social.example:8443/@alice and git@github.com:o/r.git"
    assert redact(text) == text


NEW_KEY_FORMS = {
    "base64 PEM": "tls.key: "
    + __import__("base64").b64encode(KEY_BLOCKS["pem rsa"].encode()).decode(),
    "JWK": '{"kty": "EC", "crv": "P-256", "d": "' + "x" * 43 + '"}',
    "RSAKeyValue": "<RSAKeyValue><Modulus>AQAB</Modulus><D>" + "A" * 40 + "</D></RSAKeyValue>",
    "minisign": "untrusted comment: minisign encrypted secret key\nRWRTY0Iy" + "B" * 60,
    "headerless PKCS#8": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + "C" * 32 + "\n" + "D" * 64,
    "WireGuard": "[Interface]\nPrivateKey = " + "E" * 43 + "=",
}


@pytest.mark.parametrize("form", sorted(NEW_KEY_FORMS))
def test_every_key_form_is_a_private_key_and_its_material_is_replaced(form: str):
    text = NEW_KEY_FORMS[form]
    assert has_private_key(text)
    redacted = redact(text)
    assert not any(run * 16 in redacted for run in "ABCDEx"), redacted
    assert redacted.count("\n") == text.count("\n"), "line numbers stay true"


def test_a_base64_certificate_is_not_a_private_key():
    cert = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
    assert not has_private_key("tls.crt: " + __import__("base64").b64encode(cert.encode()).decode())


NEW_SECRET_NAMES = [
    ".env1", ".envs/.production/.django", ".flaskenv", "credentials", "config/secret.yml",
    "kubeconfig", "terraform.tfvars", "wg0.conf", ".bash_history", ".psql_history",
    ".config/gcloud/application_default_credentials.json", ".config/rclone/rclone.conf",
    ".config/hub",
]  # fmt: skip


@pytest.mark.parametrize("path", NEW_SECRET_NAMES)
def test_the_credential_files_of_shells_clouds_and_tools_are_secret(path: str):
    assert is_secret_name(path)
    assert shown_name(path).endswith("[secret file]") and path.rsplit("/", 1)[-1] not in shown_name(
        path
    )


def test_the_corpus_holds_every_secret_it_counts(secret_corpus):
    """The suite's counts mean something: unredacted, the corpus shows every secret."""
    raw = "\n".join(
        p.read_text()
        for p in secret_corpus.root.rglob("*")
        if p.is_file() and ".git" not in p.parts
    )
    listing = "\n".join(
        [*secret_corpus.secret_files, *(p.as_posix() for p in secret_corpus.root.rglob("*"))]
    )
    found = secret_corpus.leaks(raw + "\n" + listing)
    for form, values in secret_corpus.forms.items():
        assert found.get(form) == values, form
    assert found["file names"] == secret_corpus.secret_files


# --- attacks: hostile text cannot slow the rule or slip past it --------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "password=" + "a" * 600_000,  # one long line
        ("password = '" + "\\" * 50) * 10_000,  # unterminated escapes
        "x" * 200_000 + "://" + ":" * 200_000 + "@" * 10,  # an endless user information
        ("token: " + "=" * 30 + "\n") * 5_000,  # many candidates, none a value
        "\x00".join(["SECRET_KEY=nul-1", "https://u:nul-2@h", "ghp_" + "n" * 36]),
    ],
    ids=["long-line", "escapes", "userinfo", "candidates", "nuls"],
)
def test_hostile_text_is_redacted_in_bounded_time(hostile: str):
    """Inputs built to make a backtracking engine explode: RE2 stays linear. The bound is
    generous (a tool call must not stall), a backtracking engine takes minutes here."""
    import time

    started = time.perf_counter()
    redacted = redact(hostile)
    assert time.perf_counter() - started < 5
    for secret in ("nul-1", "nul-2", "n" * 36):
        assert secret not in redacted


def test_the_rule_uses_no_backtracking_regex_engine():
    """Linear time comes from RE2: no module of the secret rule imports Python's `re` (whose
    backtracking a hostile file could make quadratic or worse)."""
    import ast
    from pathlib import Path

    package = Path("runs/engine/target/secrets")
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 5
    for module in modules:
        tree = ast.parse(module.read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        assert "re" not in imported, module.name


def test_redacting_grows_linearly_with_the_text(capsys):
    """A tool answer is redacted before it leaves: ten times the code takes about ten times as
    long (well under the hundred times a quadratic rule would), whatever the machine's speed.
    Each size is timed three times and the fastest kept, so a busy machine's pause in one
    sample does not decide it."""
    import time
    from pathlib import Path

    # The large text is the small one ten times over: cut from one long source, the two would
    # differ in how many secret-shaped values they hold, and the ratio would measure that.
    source = "\n".join(p.read_text() for p in sorted(Path("runs").rglob("*.py")))
    small_text = source[:50_000]
    large_text = small_text * 10

    def seconds(text: str) -> float:
        started = time.perf_counter()
        redact(text)
        return time.perf_counter() - started

    seconds(small_text)  # warm: the detectors compile on first use
    small = min(seconds(small_text) for _ in range(3))
    large = min(seconds(large_text) for _ in range(3))
    with capsys.disabled():
        print(f"\nredact: 50 KB in {small * 1000:.0f} ms, 500 KB in {large * 1000:.0f} ms")
    assert large < 30 * small


def test_ordinary_code_loses_few_lines_to_redaction(capsys):
    """False positives stay low: this project's own source, through the rule, changes few
    lines (its test and secret modules hold secret-shaped examples on purpose)."""
    from pathlib import Path

    files = [p for d in ("runs", "flows", "orchestrator_site") for p in Path(d).rglob("*.py")]
    files = [p for p in files if "secrets" not in p.parts]
    lines = changed = 0
    for path in files:
        text = path.read_text()
        before, after = text.splitlines(), redact(text).splitlines()
        assert len(before) == len(after)
        lines += len(before)
        changed += sum(1 for old, new in zip(before, after, strict=True) if old != new)
    with capsys.disabled():
        print(f"\nfalse positives: {changed} of {lines} lines in {len(files)} files changed")
    assert changed <= lines // 1000


CREDENTIAL_FILE_NAMES = [
    ("backups/postgres_shop_password=DumpTxLNOUkKjx.sql", "backups/postgres_shop_password=[redacted].sql"),
    ("dumps/db_passwd=Qz8kLmPw22.sql.gz", "dumps/db_passwd=[redacted].sql.gz"),
    ("tmp/github_token=ghTok9912", "tmp/github_token=[redacted]"),
    ("notes/app_secret: Sx7Lm0Qa.txt", "notes/app_secret: [redacted].txt"),
    ("exports/api_key=>Ak19ZzQ.csv", "exports/api_key=>[redacted].csv"),
    ("creds/password=Pw9Zx/readme.md", "creds/password=[redacted]/readme.md"),
    ("mirror/ftp_admin:FtpPw88@files.example.com.txt", "mirror/[redacted]@files.example.com.txt"),
    ("links/https%3A%2F%2Fbob%3APctPw71%40host.txt", "links/https%3A%2F%2F[redacted]%40host.txt"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "shown"), CREDENTIAL_FILE_NAMES)
def test_a_name_carrying_a_credential_shows_it_redacted_in_a_listing_and_in_any_text(name, shown):
    assert shown_name(name) == shown == redact_name(name)
    value = name.split("=")[-1].split(":")[-1].split("@")[0].split("%3A")[-1].split("%40")[0]
    value = value.lstrip("> ").split(".")[0].split("/")[0]
    # git's output names the file in running text: the value goes there too
    for line in (f"diff --git a/{name} b/{name}", f" {name} | 2 +"):
        assert value not in redact(line), line


@pytest.mark.parametrize(
    "name",
    ["src/password_reset.py", "a/b=c.txt", "mail/alice@example.com", "x/c:d.txt",
     "db_password=${DB_PASSWORD}.sql", "docs/token_refresh.md", "etc/passwd"],
)  # fmt: skip
def test_an_ordinary_name_is_shown_as_it_is(name):
    assert shown_name(name) == name and redact(name) == name


PEM_BODY = ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + "Ab3d" * 8, *("Qm9keUxpbmU" + "x" * 53,) * 3]
PEM_TEXT = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n-----END PRIVATE KEY-----\n"


def test_a_key_in_a_python_module_is_redacted_line_for_line_and_the_code_kept():
    source = f'import ssl\n\nKEY = """{PEM_TEXT}"""\n\n\ndef context():\n    return ssl.create_default_context()\n'
    shown = readable_contents(source.encode())
    assert shown is not None
    lines, original = shown.decode().splitlines(), source.splitlines()
    assert len(lines) == len(original)
    assert lines[:2] == original[:2] and lines[-3:] == original[-3:]
    assert lines[2] == 'KEY = """[private key redacted]'
    assert not any(piece[:20] in shown.decode() for piece in PEM_BODY)


def test_a_key_split_over_string_concatenations_is_redacted_whole():
    java = (
        'class Signer {\n  static final String KEY = "-----BEGIN EC PRIVATE KEY-----\\n"\n'
        + "".join(f'    + "{line}\\n"\n' for line in PEM_BODY)
        + '    + "-----END EC PRIVATE KEY-----";\n  String sign(String body) { return body; }\n}\n'
    )
    js = (
        'const jwk = {\n  "kty": "EC", "crv": "P-256",\n  "d": "ZDFhYmNkZWZnaGlqa2xt" +\n'
        '    "bm9wcXJzdHV2d3h5ejAx",\n};\nexport default jwk;\n'
    )
    for source, pieces in ((java, [p[:24] for p in PEM_BODY]), (js, ["ZDFhYmNk", "bm9wcXJz"])):
        shown = readable_contents(source.encode())
        assert shown is not None
        text = shown.decode()
        assert text.count("\n") == source.count("\n")
        assert not [piece for piece in pieces if piece in text]
        assert source.splitlines()[-2] in text.splitlines()


def test_a_wrapped_base64_key_in_yaml_is_redacted_to_its_last_line():
    encoded = base64.b64encode(PEM_TEXT.encode()).decode()
    wrapped = "\n".join("    " + encoded[i : i + 60] for i in range(0, len(encoded), 60))
    yaml = f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: web\ndata:\n  tls.key: |\n{wrapped}\n"
    yaml = yaml.replace("tls.key: |\n    ", "tls.key: ")
    shown = readable_contents(yaml.encode())
    assert shown is not None
    assert not [line for line in wrapped.splitlines()[1:] if line.strip() in shown.decode()]
    assert "  name: web" in shown.decode().splitlines()


@pytest.mark.parametrize(
    "contents",
    [
        PEM_TEXT,  # a key and nothing else, whatever the file is called
        f"# key\n{PEM_TEXT}",
        f'import ssl\nKEY = """{PEM_TEXT[:-30]}\n\ndef context():\n    return None\n',  # unterminated
        'config = {"d": "' + "A" * 40 + '", "name": "not a jwk but holds a d member"}\n',
    ],
)
def test_a_key_file_or_a_key_whose_extent_is_unsure_is_refused_whole(contents):
    assert readable_contents(contents.encode()) is None


def test_contents_without_a_key_pass_unchanged_and_not_utf8_with_a_key_is_refused():
    assert readable_contents(b"print('hello')\n") == b"print('hello')\n"
    assert readable_contents(b"\xff\xfe" + PEM_TEXT.encode() + b"x = 1\n" * 20) is None
