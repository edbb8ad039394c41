"""The escapes of escape.py, one medium at a time (the injection corpus in
test_injection.py renders them end to end)."""
from __future__ import annotations

from convai_sync.escape import code_span, fence, inline, inline_quoted, markdown, terminal


def test_inline_shows_every_control_and_invisible_character_as_its_escape() -> None:
    assert inline("a\nb\r\tc\x1b[2J\x07\x9b\u202e\u200b\u2028") == \
        "a\\nb\\r\\tc\\x1b[2J\\x07\\x9b\\u202e\\u200b\\u2028"
    assert inline("Café ✓ 日本") == "Café ✓ 日本"  # printable text is left alone
    assert terminal("one\ntwo\x1b") == "one\ntwo\\x1b"  # a message keeps its own lines
    assert inline_quoted("x\ny") == "'x\\ny'" and inline_quoted(3) == "3"


def test_markdown_prose_cannot_format_link_mention_or_open_html() -> None:
    out = markdown("**b** _i_ `c` [l](https://x.example) ![i](y) @team <img> a|b ~~s~~ &amp;")
    assert out == ("\\*\\*b\\*\\* \\_i\\_ \\`c\\` \\[l\\](https:\u200b//x.example) !\\[i\\](y) "
                   "@\u200bteam &lt;img&gt; a\\|b \\~\\~s\\~\\~ &amp;amp;")


def test_code_cannot_be_closed_from_inside() -> None:
    assert code_span("a`b") == "``a`b``" and code_span("`x`") == "`` `x` ``"
    assert fence(["x", "````", "y\x1b"], "diff") == ["`````diff", "x", "````", "y\\x1b", "`````"]
    assert fence(["plain"]) == ["```", "plain", "```"]
