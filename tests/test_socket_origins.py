"""Which pages may open a run's socket: the site itself and the configured embedding origins,
compared on scheme, host and port (orchestrator_site/origins.py); everything else, a missing
Origin and `null` included, is refused before the consumer runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from devtools.testing import ROOT
from orchestrator_site.env import env_origins

SITE = "127.0.0.1:8000"


def handshake(open_pane_socket: Any, user: Any, run: Any, **options: Any) -> bool:
    """Whether the handshake was accepted (and a snapshot arrived when it was)."""

    async def scenario() -> bool:
        ws, connected = await open_pane_socket(user, run, **options)
        if connected:
            assert 'id="run-state"' in await ws.receive_from(timeout=5)
        await ws.disconnect()
        return connected

    return asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
class TestOrigins:
    def test_the_sites_own_page_opens_the_socket(self, alice, finished_run, open_pane_socket):
        assert handshake(open_pane_socket, alice, finished_run, origin=f"http://{SITE}")

    @pytest.mark.parametrize(
        "origin",
        [
            "http://127.0.0.1:8632",  # another local web app or dev server
            "http://127.0.0.1",  # the same host on the default port
            "https://127.0.0.1:8000",  # the same host and port over another scheme
            "http://localhost:8000",  # an allowed host, but not the one addressed
            "http://evil.example:8000",
            "null",  # sandboxed frames, file:// pages
            "",
        ],
    )
    def test_any_other_origin_is_refused(self, alice, finished_run, open_pane_socket, origin):
        assert not handshake(open_pane_socket, alice, finished_run, origin=origin)

    def test_a_handshake_without_an_origin_is_refused(self, alice, finished_run, open_pane_socket):
        assert not handshake(open_pane_socket, alice, finished_run, origin=None)

    def test_a_host_outside_allowed_hosts_is_not_the_site(
        self, alice, finished_run, open_pane_socket
    ):
        """A page on a host the site does not serve cannot make itself "the site"."""
        options = {"origin": "http://evil.example:8000", "host": "evil.example:8000"}
        assert not handshake(open_pane_socket, alice, finished_run, **options)

    def test_an_allowed_embedding_origin_opens_the_socket_and_only_on_its_port(
        self, alice, finished_run, open_pane_socket, settings
    ):
        settings.ORCHESTRATOR_EMBED_ORIGINS = ["https://host.example:8443"]
        assert handshake(open_pane_socket, alice, finished_run, origin="https://host.example:8443")
        assert not handshake(
            open_pane_socket, alice, finished_run, origin="https://host.example:8444"
        )
        assert not handshake(
            open_pane_socket, alice, finished_run, origin="http://host.example:8443"
        )

    def test_the_proxys_https_header_counts_only_when_configured(
        self, alice, finished_run, open_pane_socket, settings
    ):
        """Behind a TLS proxy the page is https while daphne sees ws; the proxy's header is
        believed only when SECURE_PROXY_SSL_HEADER names it."""
        forwarded = {"origin": f"https://{SITE}", "extra": [(b"x-forwarded-proto", b"https")]}
        assert not handshake(open_pane_socket, alice, finished_run, **forwarded)
        settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        assert handshake(open_pane_socket, alice, finished_run, **forwarded)
        assert not handshake(
            open_pane_socket, alice, finished_run, origin=f"http://{SITE}", extra=forwarded["extra"]
        )


class TestEmbedOriginsSetting:
    def test_exact_origins_are_read_and_written_one_way(self, monkeypatch):
        monkeypatch.setenv(
            "ORCHESTRATOR_EMBED_ORIGINS",
            "https://Host.Example:8443  http://[::1]:9000 https://a.b/",
        )
        assert env_origins("ORCHESTRATOR_EMBED_ORIGINS") == [
            "https://host.example:8443",
            "http://[::1]:9000",
            "https://a.b",
        ]

    def test_empty_by_default(self, monkeypatch):
        monkeypatch.delenv("ORCHESTRATOR_EMBED_ORIGINS", raising=False)
        assert env_origins("ORCHESTRATOR_EMBED_ORIGINS") == []

    @pytest.mark.parametrize(
        "value",
        [
            "*",
            "host.example",  # no scheme
            "ftp://host.example",
            "https://.example.com",  # channels would read a leading dot as every subdomain
            "https://*.example.com",
            "https://host.example/app",
            "https://host.example?x=1",
            "https://user@host.example",
            "https://host.example:99999",
            "null",
        ],
    )
    def test_anything_but_an_exact_origin_stops_the_start_naming_the_variable(
        self, monkeypatch, value
    ):
        monkeypatch.setenv("ORCHESTRATOR_EMBED_ORIGINS", f"https://fine.example {value}")
        with pytest.raises(ImproperlyConfigured, match="ORCHESTRATOR_EMBED_ORIGINS"):
            env_origins("ORCHESTRATOR_EMBED_ORIGINS")

    @pytest.mark.parametrize(
        ("variable", "value", "sentence"),
        [
            ("ORCHESTRATOR_EMBED_ORIGINS", "http://127.0.0.1:*", "must list exact origins"),
            ("ORCHESTRATOR_MAX_SOCKETS_PER_USER", "0", "must be at least 1"),
        ],
    )
    def test_the_service_refuses_to_start_with_a_sentence_not_a_traceback(
        self, variable, value, sentence
    ):
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "check"],
            cwd=ROOT,
            env={**os.environ, variable: value},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert f"Configuration error: {variable} {sentence}" in result.stderr
        assert "Traceback" not in result.stderr
