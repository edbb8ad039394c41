"""Finding 10 of issue 11: the YAML loader refuses depth and size before it parses:
100 KB of `[` crashed libyaml (exit 139, no message), 1,000 levels were an internal
error, and a big file of comments raised the alias budget of a nested alias bomb."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_env

BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"] +
                 [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                  f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                  f"*{chr(97 + i)}, *{chr(97 + i)}]" for i in range(7)])

CASES = {
    "100 KB of [": ("version: 1\nmodels: " + "[" * 100_000 + "\n", ":2: nesting deeper than 64 levels"),
    "1,000 levels of {": ("version: 1\nx: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n",
                          ":2: nesting deeper than 64 levels"),
    "1,000 levels of block mappings": ("version: 1\n" + "".join(" " * i + f"k{i}:\n" for i in range(1000)),
                                       ":66: nesting deeper than 64 levels"),
    "1,000 levels of - - -": ("version: 1\nmodels:\n" + "- " * 1000 + "x\n", ":3: nesting deeper"),
    "comments buy no alias budget": (("#" + " " * 99 + "\n") * 90_000 + "version: 1\n" + BOMB + "\n",
                                     "YAML aliases expand the document to more than 1,000,000 values"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_manifest_is_refused_with_file_and_line_before_parsing(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    path = tmp_path / "models.yaml"
    path.write_text(text)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "convai_sync", "validate", "-f", str(path)],
                          capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-500:])  # not 139, not a hang
    assert f"{path}:" in proc.stderr and expected in proc.stderr, proc.stderr[-500:]
    assert "internal error" not in proc.stderr
    assert time.monotonic() - started < 10


def test_deep_but_legal_nesting_inside_quotes_and_comments_is_not_counted(tmp_path: Path) -> None:
    from convai_sync import yamlpos
    yamlpos.check_depth("a: '" + "[" * 200 + "'\nb: \"" + "{" * 200 + "\"\nc: 1 # " + "[" * 200 + "\n")
