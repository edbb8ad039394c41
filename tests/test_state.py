"""The state file: what it holds, byte for byte (users commit it beside the
manifest, so its layout is part of the diff they review), and how it fails."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from convai_sync.errors import ConvaiSyncError
from convai_sync.plan import Plan
from convai_sync.state import SyncState

URL = "production@https://api.convai.com"


def plan_with_versions(versions: dict[str, int]) -> Plan:
    return Plan("llm-models", [], meta={"api_key_versions": versions})


def test_the_file_is_sorted_indented_json_with_every_record(tmp_path: Path) -> None:
    path = tmp_path / "models.state.json"
    SyncState(path, URL, {"b": 2, "a": 1}, {"c9": "m1"}, {"uuids": {"m1": "u-1"}},
              {"m2": {"is_uncensored": True}, "m1": {"is_uncensored": False}}).save()
    assert path.read_text("utf-8") == """{
  "accounts": {
    "production@https://api.convai.com": {
      "api_key_versions": {
        "a": 1,
        "b": 2
      },
      "applied_fields": {
        "m1": {
          "is_uncensored": false
        },
        "m2": {
          "is_uncensored": true
        }
      },
      "parked_characters": {
        "c9": "m1"
      },
      "platform": {
        "uuids": {
          "m1": "u-1"
        }
      }
    }
  },
  "format_version": 1
}
"""
    assert not (tmp_path / "models.state.json.tmp").exists()  # written aside, then renamed


def test_empty_records_are_left_out_and_a_load_reads_back_what_was_saved(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    SyncState(path, URL, {"a": 1}).save()
    assert json.loads(path.read_text())["accounts"][URL] == {"api_key_versions": {"a": 1}}
    SyncState(path, URL, {"a": 3}, {"c1": "m"}, {"k": "v"}, {"a": {"is_uncensored": True}}).save()
    back = SyncState.load(path, URL)
    assert (back.versions, back.parked, back.memo, back.fields) == (
        {"a": 3}, {"c1": "m"}, {"k": "v"}, {"a": {"is_uncensored": True}})


def test_a_record_from_before_environments_is_read_once_and_moved(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    SyncState(path, "https://api.convai.com", {"a": 2}).save()
    state = SyncState.load(path, URL, legacy="https://api.convai.com")
    assert state.versions == {"a": 2}
    state.save()
    assert list(json.loads(path.read_text())["accounts"]) == [URL]


def test_other_accounts_in_the_file_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    SyncState(path, "http://other", {"x": 5}).save()
    SyncState.load(path, URL).save()
    doc = json.loads(path.read_text())
    assert doc["accounts"]["http://other"] == {"api_key_versions": {"x": 5}}
    assert doc["accounts"][URL] == {"api_key_versions": {}}
    assert SyncState.load(path, "http://nobody").versions == {}


def test_a_file_without_accounts_reads_as_empty_and_takes_one(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"format_version": 1}')
    state = SyncState.load(path, URL)
    assert (state.versions, state.parked) == ({}, {})
    state.versions = {"a": 1}
    state.save()
    assert json.loads(path.read_text())["accounts"] == {URL: {"api_key_versions": {"a": 1}}}


def test_the_environments_own_record_wins_over_a_legacy_one(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"format_version": 1, "accounts": {
        URL: {"api_key_versions": {"a": 2}}, "https://api.convai.com": {"api_key_versions": {"a": 1}}}}))
    assert SyncState.load(path, URL, legacy="https://api.convai.com").versions == {"a": 2}


def test_without_a_path_nothing_is_written(tmp_path: Path) -> None:
    SyncState(None, URL, {"a": 1}).save()
    assert list(tmp_path.iterdir()) == []


def test_a_state_file_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "s.json"
    with pytest.raises(ConvaiSyncError, match=r"s\.json: cannot write the state file: "
                                              r"No such file or directory"):
        SyncState(path, URL, {"a": 1}).save()


@pytest.mark.parametrize("text,why", [
    ("not json", "Expecting value"),
    ('{"format_version": 2}', "unknown format_version 2"),
    ('{"format_version": 1, "accounts": {"%s": {"api_key_versions": {"a": "x"}}}}' % URL, "invalid literal"),
])
def test_a_broken_state_file_is_refused_with_what_to_do(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(ConvaiSyncError, match=f"s\\.json: not a convai-sync state file \\(.*{why}"
                                              r".*\); fix or delete it \(deleting it only means each "
                                              r"versioned key is sent once more\)"):
        SyncState.load(path, URL)


def test_worth_saving_only_when_there_is_something_to_keep(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    nothing = plan_with_versions({})
    assert not SyncState(path, URL).worth_saving(nothing)
    assert SyncState(path, URL).worth_saving(plan_with_versions({"a": 1}))
    assert SyncState(path, URL, parked={"c": "m"}).worth_saving(nothing)
    assert SyncState(path, URL, memo={"k": "v"}).worth_saving(nothing)
    assert SyncState(path, URL, fields={"a": {"is_uncensored": True}}).worth_saving(nothing)
    path.write_text('{"format_version": 1}')
    assert SyncState.load(path, URL).worth_saving(nothing)  # an existing file is kept up to date
    assert not SyncState(None, URL).worth_saving(nothing)


# --- record_applied: what an apply's outcomes change in the state ---------------------------

from convai_sync.executor import DONE, FAILED, NOT_ATTEMPTED, ApplyReport, Outcome  # noqa: E402
from convai_sync.plan import Change, Phase, Purpose  # noqa: E402
from convai_sync.state import record_applied  # noqa: E402


def mchange(name: str, action: str, phase: Phase, sends_key: bool = False) -> Change:
    return Change("model", name, action, phase, None, {"model_name": "m"}, ("model_name",),
                  sends_key=sends_key)


def cchange(cid: str, phase: Phase, purpose: Purpose, to: str = "m") -> Change:
    return Change("character", cid, "update", phase, {"model_group_name": "x"},
                  {"model_group_name": to}, ("model_group_name",), purpose=purpose)


def applied(state: SyncState, outcomes: list[Outcome], **meta: object) -> SyncState:
    plan = Plan("llm-models", [o.change for o in outcomes], meta=meta)
    record_applied(state, plan, ApplyReport(outcomes))
    return state


def test_key_versions_are_recorded_only_when_every_write_sending_the_key_is_done() -> None:
    state = SyncState(None, URL, {"gone": 1, "unversioned": 1, "dereg": 1, "failed-dereg": 1})
    outcomes = [Outcome(cchange("c0", Phase.REBIND, Purpose.DECLARED), DONE),  # a consumer first
                Outcome(mchange("a", "register", Phase.REGISTER, True), DONE),
                Outcome(mchange("b", "update", Phase.UPDATE, True), FAILED),
                Outcome(mchange("c", "update", Phase.UPDATE), DONE),
                Outcome(mchange("dereg", "deregister", Phase.DEREGISTER), DONE),
                Outcome(mchange("failed-dereg", "deregister", Phase.DEREGISTER), FAILED)]
    applied(state, outcomes, api_key_versions={"a": 2, "b": 3, "c": 4})
    # a: sent and done; b: sending failed; c: nothing to send; deregistered: forgotten;
    # whatever is not in the manifest's versions (deregistered or not) is dropped
    assert state.versions == {"a": 2, "c": 4}


def test_write_only_fields_are_recorded_once_every_write_to_the_model_is_done() -> None:
    state = SyncState(None, URL, fields={"old": {"is_uncensored": True}, "b": {"is_uncensored": False}})
    outcomes = [Outcome(mchange("a", "update", Phase.UPDATE), DONE),
                Outcome(mchange("b", "update", Phase.UPDATE), DONE),
                Outcome(mchange("b", "replace", Phase.REPLACE), NOT_ATTEMPTED)]
    applied(state, outcomes, applied_fields={"a": {"is_uncensored": True},
                                             "b": {"is_uncensored": True},
                                             "untouched": {"is_uncensored": True}})
    assert state.fields == {"a": {"is_uncensored": True}, "b": {"is_uncensored": False},
                            "untouched": {"is_uncensored": True}}


def test_parking_is_remembered_until_the_character_is_back() -> None:
    state = SyncState(None, URL, parked={"resolved": "m", "back": "m", "kept": "m", "p2": "m2",
                                         "u9": "m"})
    outcomes = [Outcome(cchange("p1", Phase.REBIND, Purpose.PARKED, "gpt-4o"), DONE),
                Outcome(cchange("p1", Phase.RESTORE, Purpose.UNMANAGED, "m1"), FAILED),
                Outcome(cchange("p2", Phase.REBIND, Purpose.PARKED, "gpt-4o"), DONE),
                Outcome(cchange("p2", Phase.RESTORE, Purpose.UNMANAGED, "m2"), DONE),
                Outcome(cchange("p3", Phase.RESTORE, Purpose.UNMANAGED, "m3"), FAILED),  # never parked
                Outcome(cchange("d1", Phase.RESTORE, Purpose.DECLARED, "m4"), FAILED),
                Outcome(cchange("back", Phase.REBIND, Purpose.UNPARKED, "m"), DONE),
                Outcome(cchange("kept", Phase.REBIND, Purpose.UNPARKED, "m"), FAILED),
                Outcome(cchange("u1", Phase.REBIND, Purpose.UNMANAGED, "m"), DONE),
                Outcome(cchange("u9", Phase.REBIND, Purpose.UNMANAGED, "gpt-4o"), DONE),
                Outcome(cchange("never", Phase.REBIND, Purpose.UNPARKED, "m"), DONE)]
    applied(state, outcomes, parked_resolved=["resolved", "not-parked"])
    assert state.parked == {"kept": "m", "p1": "m1", "u9": "m"}
