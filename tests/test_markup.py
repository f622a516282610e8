"""Markdown from the model, rendered once per document with one reused parser."""

from __future__ import annotations

import threading

from runs.markup import render_markdown


def test_nothing_from_one_document_leaks_into_the_next():
    """A reference link defined in one report does not resolve in another."""
    first = render_markdown("[home][x]\n\n[x]: https://evil.example/\n")
    assert 'href="https://evil.example/"' in first
    second = render_markdown("[home][x]\n")
    assert "evil" not in second and "<a" not in second


def test_it_still_sanitises_and_renders_tables_and_code():
    """Scripts, handlers and javascript: links are dropped; tables and fences render."""
    html = render_markdown(
        "| a |\n|---|\n| <img src=x onerror=alert(1)> |\n\n```\n<b>x</b>\n```\n"
        "[y](javascript:alert(1)) <script>alert(2)</script>"
    )
    assert "<table>" in html and "<pre><code>" in html
    assert "onerror" not in html and "<script" not in html and "javascript:" not in html


def test_threads_render_side_by_side_without_mixing_documents():
    """Each thread has its own parser: eight threads, each sees only its own text."""
    results: dict[int, list[str]] = {}

    def work(n: int) -> None:
        results[n] = [render_markdown(f"## doc {n}\n\n- item {n}") for _ in range(50)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, outputs in results.items():
        assert set(outputs) == {f"<h2>doc {n}</h2>\n<ul>\n<li>item {n}</li>\n</ul>"}
