"""Finding 7 of issue 11: names from the live account and values from a pull request
are written by someone else. Rendered in every format (text, JSON, Markdown, errors,
the failed-plan comment), none may forge a line, a workflow command, a terminal
control sequence, a heading, a mention, an image, a link or HTML."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import pytest

from conftest import EXAMPLE, Result
from convai_sync.emulator import Emulator, demo_seed

HOSTILE = ("Evil\n::error file=x::pwned\r\x1b[2J\x1b]0;t\x07 @octocat ![i](https://evil.example/x.png) "
           "[click](https://evil.example) <img src=x onerror=alert(1)> ```\n# Fake heading \u202etxt")


def hostile_seed() -> dict:
    seed = demo_seed()
    seed["characters"].append({"character_id": "evil-1", "character_name": HOSTILE,
                               "model_group_name": "legacy-mixtral", "temperature": 0.5})
    return seed


def assert_terminal_safe(text: str) -> None:
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", text), repr(text)
    for line in text.splitlines():
        assert not line.startswith(("::", "# Fake")), f"a forged line: {line!r}"


def prose(md: str) -> str:
    """What GitHub renders as Markdown: outside fenced blocks and code spans."""
    out, fence = [], ""
    for line in md.splitlines():
        m = re.match(r"^(`{3,})", line)
        if fence:
            if m and len(m.group(1)) >= len(fence) and line.strip("`") == "":
                fence = ""
            continue
        if m:
            fence = m.group(1)
            continue
        out.append(re.sub(r"(`+).*?\1", "", line))
    assert not fence, "an unclosed fence"
    return "\n".join(out)


def assert_markdown_safe(md: str) -> None:
    assert_terminal_safe(md)
    text = prose(md)
    assert "@octocat" not in text and "![" not in text and "](https://evil" not in text
    assert "<img" not in text and "https://evil" not in text
    assert not any(line.startswith("#") and not line.startswith("### convai-sync")
                   for line in text.splitlines())


def test_a_hostile_live_name_is_inert_in_every_format(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = make_emulator(seed=hostile_seed())
    args = ("-f", str(EXAMPLE), "--api-url", emu.url, "--state-file", str(tmp_path / "s.json"))
    text = run("plan", *args)
    assert text.code == 0 and "evil-1" in text.stdout
    assert_terminal_safe(text.output)
    assert "\\x1b[2J" in text.stdout  # shown, escaped, not dropped

    doc = run("plan", *args, "--format", "json")
    assert_terminal_safe(doc.stdout)
    names = [c.get("name") for c in json.loads(doc.stdout)["changes"]]
    assert HOSTILE in names  # JSON carries the value exactly, escaped by JSON itself

    md = run("plan", *args, "--format", "markdown")
    assert "evil-1" in md.stdout
    assert_markdown_safe(md.stdout)

    applied = run("apply", *args, "--auto-approve")
    assert applied.code == 0, applied.output
    assert_terminal_safe(applied.output)


@pytest.mark.parametrize("where", ["unknown key", "model reference"])
def test_hostile_manifest_values_are_inert_in_errors_and_the_failed_plan_comment(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], tmp_path: Path,
        where: str) -> None:
    emu = make_emulator()
    value = json.dumps(HOSTILE)  # a YAML double-quoted string holding every character
    text = EXAMPLE.read_text()
    if where == "unknown key":
        text = text.replace("  prune: true", f"  prune: true\n  {value}: 1")
    else:
        text = text.replace("    model_group_name: studio-turbo\n    temperature: 0.4",
                            f"    model_group_name: {value}\n    temperature: 0.4")
    manifest = tmp_path / "models.yaml"
    manifest.write_text(text)
    result = run("plan", "-f", str(manifest), "--api-url", emu.url, "--format", "markdown",
                 "--full-plan-url", "https://ci.example/run/1")
    assert result.code == 1
    assert "models.yaml:" in result.stderr and "\\x1b[2J" in result.stderr
    assert_terminal_safe(result.stderr)
    assert result.stdout.startswith("<!-- convai-sync:plan -->\n")
    assert "The plan failed" in result.stdout and "\\x1b[2J" in result.stdout
    assert_markdown_safe(result.stdout)
    assert "[Open the workflow run](<https://ci.example/run/1>)" in result.stdout


def test_a_tampered_saved_plan_cannot_forge_lines_when_shown(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = make_emulator()
    plan = tmp_path / "plan.json"
    assert run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--out", str(plan)).code == 0
    doc = json.loads(plan.read_text())
    change = next(c for c in doc["changes"] if c["action"] == "update")
    change["after"][HOSTILE] = HOSTILE
    change["fields"].append(HOSTILE)
    plan.write_text(json.dumps(doc))
    for fmt in ("text", "markdown"):
        shown = run("show", str(plan), "--format", fmt)
        assert shown.code == 0 and "\\x1b[2J" in shown.stdout, shown.output
        (assert_markdown_safe if fmt == "markdown" else assert_terminal_safe)(shown.stdout)
