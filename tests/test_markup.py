"""Markdown from the model, rendered once per document with one reused parser."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from runs.markup import render_markdown, sanitised_markdown


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


def test_each_table_scrolls_in_a_frame_of_its_own():
    """A Markdown table and a raw one nested in it (the model may write either) each get one
    frame, opened before the table and closed after it."""
    html = render_markdown(
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n<table><tr><td><table><tr><td>in</td></tr></table>"
        "</td></tr></table>\n"
    )
    assert html.count('<div class="table-scroll"><table>') == html.count("<table>") == 3
    assert html.count("</table></div>") == html.count("</table>") == 3
    assert html.count("<div") == html.count("</div>") == 3


def test_a_table_written_inside_an_attribute_stays_text():
    """'<table>' in a link's title (escaped by nh3, and read whole with its tag if it were
    not) gets no frame: only real tables do."""
    html = render_markdown(
        '[x](https://e.example/ "<table> </table>") <a title="<table>" href="https://e.example/">y</a>'
    )
    assert "table-scroll" not in html and "<table>" not in html
    assert html.count('title="&lt;table&gt;') == 2


def test_long_words_in_a_cell_can_wrap_at_their_separators():
    """A path, a URL or a hash in a cell gets <wbr> after its slashes and punctuation (or every
    16 characters); an entity is never cut; numbers and the text outside tables are left whole."""
    path = "src/orchestrator/engine/report/reporting.py:123"
    url = "https://example.com/a/long/url?with=query&and=more"
    digest = "deadbeefcafebabe0123456789abcdef"
    html = render_markdown(
        f"{path}\n\n| where | n |\n|---|---|\n| `{path}` | 123456/12345 |\n| {url} | 1 |\n"
        f"| {digest} | 2 |\n"
    )
    assert f"<p>{path}</p>" in html
    assert (
        "<code>src/<wbr>orchestrator/<wbr>engine/<wbr>report/<wbr>reporting.<wbr>py:<wbr>123"
        in html
    )
    assert "<td>123456/12345</td>" in html
    assert "query&amp;<wbr>and=" in html and "&<wbr>" not in html
    assert "<td>deadbeefcafebabe<wbr>0123456789abcdef</td>" in html
    whole = html.replace("<wbr>", "")
    assert whole.count(path) == 2 and url.replace("&", "&amp;") in whole


HOSTILE = st.lists(
    st.sampled_from(
        [
            "| a | b |\n|---|---|\n",
            "| ",
            " |",
            "\n",
            "<table>",
            "</table>",
            "<td>",
            "</td>",
            "<tr>",
            '<a title="',
            '" href="https://e.example/">',
            "</a>",
            '"',
            "'",
            "<",
            ">",
            "&",
            "&amp;",
            "`",
            "<script>x</script>",
            "<div class=table-scroll>",
            "<wbr>",
            "a/b/c/d/e/f/g/h/i/j/k/l/m/n",
            "x" * 40,
            " ",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
def test_framing_adds_only_its_own_markup_to_what_nh3_kept(text):
    """Whatever the model writes, the framed HTML is nh3's output plus frames and <wbr>: take
    those out and nh3's output is back, byte for byte; frames open and close in pairs."""
    clean = sanitised_markdown(text)
    framed = render_markdown(text)
    assert "<div" not in clean and "<wbr>" not in clean  # nh3 keeps neither from the model
    assert framed.count('<div class="table-scroll">') == framed.count("</div>")
    assert framed.count('<div class="table-scroll">') == clean.count("<table>")
    unframed = (
        framed.replace('<div class="table-scroll">', "").replace("</div>", "").replace("<wbr>", "")
    )
    assert unframed == clean
