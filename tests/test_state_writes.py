"""How the state file is written, save after save (an apply saves as each write
lands): other accounts survive every save, the temporary file is a hidden one
beside the state file (so the rename is atomic on one filesystem, and one left
by a kill -9 is recognisable), and a failed write reports its own error."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from convai_sync.errors import ConvaiSyncError
from convai_sync.state import SyncState

URL = "production@https://api.convai.com"


def test_other_accounts_survive_every_save_not_only_the_first(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    SyncState(path, "staging@http://other", {"x": 5}).save()
    state = SyncState.load(path, URL)
    for version in (1, 2, 3):
        state.versions = {"a": version}
        state.save()
    assert json.loads(path.read_text())["accounts"] == {
        "staging@http://other": {"api_key_versions": {"x": 5}}, URL: {"api_key_versions": {"a": 3}}}


def test_the_temporary_file_is_hidden_beside_the_state_file(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        renames.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    monkeypatch.chdir(tmp_path)  # not the state file's directory
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "elsewhere" / "models.state.json"
    SyncState(path, URL, {"a": 1}).save()
    [(src, dst)] = renames
    assert dst == str(path) and Path(src).parent == path.parent
    assert Path(src).name.startswith(".models.state.json.") and src.endswith(".tmp")
    assert sorted(p.name for p in path.parent.iterdir()) == ["models.state.json"]


def test_a_failed_rename_reports_its_error_even_when_the_temporary_file_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def vanishing(src: str, dst: str) -> None:  # e.g. a cleaner removed it, then the rename failed
        os.unlink(src)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", vanishing)
    path = tmp_path / "s.json"
    with pytest.raises(ConvaiSyncError) as info:
        SyncState(path, URL, {"a": 1}).save()
    assert str(info.value) == f"{path}: cannot write the state file: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.mkdir()  # a directory where the file should be: the rename fails
    with pytest.raises(ConvaiSyncError) as info:
        SyncState(path, URL, {"a": 1}).save()
    assert str(info.value) == f"{path}: cannot write the state file: Is a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
