"""Unit tests of the planner: pure logic, no HTTP."""
from __future__ import annotations

import pytest

from convai_sync.errors import PlanError
from convai_sync.manifest import parse_manifest
from convai_sync.model import ConsumerState, LiveState, ModelState
from convai_sync.plan import Change, Phase, Plan
from convai_sync.planner import Brakes, build_plan

BASE = "https://vllm.example/v1"


def manifest(models: str = "", characters: str = "", settings: str = "") -> object:
    text = "version: 1\n"
    if settings:
        text += "settings:\n" + settings
    text += "models:\n" + (models or "  []\n")
    text += "characters:\n" + (characters or "  []\n")
    return parse_manifest(text, "m.yaml")


def model(group: str, name: str = "m-1", display: str | None = None, extra: str = "") -> str:
    out = f"  - model_group_name: {group}\n    model_name: {name}\n    base_url: {BASE}\n" \
          f"    api_key: ${{KEY_{group.upper().replace('-', '_')}}}\n"
    if display:
        out += f"    display_name: {display}\n"
    return out + extra


def char(cid: str, group: str, temp: float | None = None) -> str:
    out = f"  - char_id: {cid}\n    model_group_name: {group}\n"
    return out + (f"    temperature: {temp}\n" if temp is not None else "")


def live(models: list[ModelState], chars: list[ConsumerState], dialect: str = "llm-models") -> LiveState:
    return LiveState(dialect, {m.name: m for m in models}, {c.id: c for c in chars})


def lm(group: str, name: str | None = "m-1", display: str | None = None, unc: bool | None = False,
       base: str | None = BASE) -> ModelState:
    return ModelState(group, {"model_name": name, "base_url": base, "display_name": display,
                              "is_uncensored": unc})


def ch(cid: str, group: str, temp: float | None = 0.5, name: str | None = None) -> ConsumerState:
    return ConsumerState(cid, group, {"temperature": temp}, name)


def kinds(plan: Plan) -> list[tuple[str, str, str, str]]:
    return [(c.phase.name, c.to_json()["resource"], c.action, c.id) for c in plan.changes]


def test_converged_account_plans_nothing() -> None:
    m = manifest(model("a", display="A"), char("c1", "a", 0.5))
    plan = build_plan(m, live([lm("a", display="A")], [ch("c1", "a", 0.5)]))
    assert plan.empty
    assert plan.summary_line() == "No changes. The account matches the manifest."


def test_register_sends_sensitive_key_placeholder_only() -> None:
    plan = build_plan(manifest(model("a", display="A")), live([], []))
    [change] = plan.changes
    assert (change.phase, change.action) == (Phase.REGISTER, "register")
    assert change.after == {"model_name": "m-1", "base_url": BASE, "display_name": "A",
                            "is_uncensored": False, "api_key": "(sensitive)"}


def test_update_in_place_only_sends_what_differs() -> None:
    plan = build_plan(manifest(model("a", display="New")), live([lm("a", display="Old")], []))
    [change] = plan.changes
    assert (change.action, change.fields) == ("update", ("display_name",))
    assert change.before["display_name"] == "Old" and change.after["display_name"] == "New"


def test_unreadable_fields_without_a_record_are_no_difference_in_custom_llm() -> None:
    # custom-llm's list returns no is_uncensored: with no record of it, it is adopted
    m = manifest(model("a", extra="    is_uncensored: true\n"))
    state = live([lm("a", "m-1", None, None)], [], dialect="custom-llm")
    plan = build_plan(m, state)
    assert plan.empty
    assert plan.meta["unchecked_fields"] == ["display_name", "is_uncensored"]
    assert plan.meta["applied_fields"] == {"a": {"is_uncensored": True}}


def test_a_write_only_field_that_differs_from_the_value_applied_is_updated() -> None:
    m = manifest(model("a", extra="    is_uncensored: true\n"))
    state = live([lm("a", "m-1", None, None)], [], dialect="custom-llm")
    [change] = build_plan(m, state, applied={"a": {"is_uncensored": False}}).changes
    assert (change.action, change.fields) == ("update", ("is_uncensored",))
    assert (change.before["is_uncensored"], change.after["is_uncensored"]) == (False, True)
    assert build_plan(m, state, applied={"a": {"is_uncensored": True}}).empty
    # llm-models returns it: the live value decides, the record is not consulted
    assert build_plan(m, live([lm("a", unc=True)], []), applied={"a": {"is_uncensored": False}}).empty


def test_a_field_the_detected_dialect_cannot_set_is_a_plan_error_naming_it() -> None:
    m = manifest(model("a", display="Anything"))
    with pytest.raises(PlanError) as e:
        build_plan(m, live([lm("a", "m-1", None, None)], [], dialect="custom-llm"))
    assert ("m.yaml:3: model 'a' sets display_name, which the custom-llm API cannot set (neither "
            "its register nor its update takes it)") in str(e.value)
    assert build_plan(m, live([lm("a", display="Anything")], [])).empty  # llm-models takes it


def test_an_explicit_dialect_that_cannot_set_a_field_is_a_validate_error() -> None:
    from convai_sync.errors import ManifestError
    with pytest.raises(ManifestError) as e:
        manifest(model("a", display="Anything"), settings="  api_dialect: custom-llm\n")
    assert "m.yaml:9: model 'a' sets display_name, which the custom-llm API cannot set" in str(e.value)
    manifest(model("a", display="Anything"), settings="  api_dialect: llm-models\n")


def test_model_name_change_is_an_update_in_custom_llm() -> None:
    state = live([lm("a", "old", None, None)], [ch("c1", "a")], dialect="custom-llm")
    plan = build_plan(manifest(model("a", name="new"), char("c1", "a")), state)
    assert kinds(plan) == [("UPDATE", "model", "update", "a")]


def test_model_name_change_in_llm_models_replaces_and_parks_characters() -> None:
    m = manifest(model("a", name="new"), char("c1", "a", 0.7), settings="  fallback_model: gpt-4o\n")
    state = live([lm("a", name="old")], [ch("c1", "a", 0.5), ch("u1", "a", 0.3)])
    plan = build_plan(m, state)
    assert kinds(plan) == [
        ("REBIND", "character", "update", "c1"),
        ("REBIND", "character", "update", "u1"),
        ("REPLACE", "model", "replace", "a"),
        ("RESTORE", "character", "update", "c1"),
        ("RESTORE", "character", "update", "u1"),
    ]
    park, unmanaged_park, replace, back, unmanaged_back = plan.changes
    assert park.after == {"model_group_name": "gpt-4o", "temperature": 0.5}
    assert replace.forces_replace == ("model_name",)
    assert back.after == {"model_group_name": "a", "temperature": 0.7}
    assert back.fields == ("model_group_name", "temperature")
    assert unmanaged_back.after == {"model_group_name": "a", "temperature": 0.3}


def test_replace_without_fallback_is_refused_naming_the_character() -> None:
    m = manifest(model("a", name="new"), char("c1", "a"))
    with pytest.raises(PlanError, match=r"model 'a' must be replaced and character 'Mara' \(c1\)"):
        build_plan(m, live([lm("a", name="old")], [ch("c1", "a", name="Mara")]))


def test_prune_moves_unmanaged_characters_to_fallback_before_deregistering() -> None:
    m = manifest(model("a"), char("c1", "a"), settings="  prune: true\n  fallback_model: gpt-4o-mini\n")
    state = live([lm("a"), lm("old")], [ch("c1", "old"), ch("u1", "old", 0.2)])
    plan = build_plan(m, state)
    assert kinds(plan) == [("REBIND", "character", "update", "c1"),
                           ("REBIND", "character", "update", "u1"),
                           ("DEREGISTER", "model", "deregister", "old")]
    assert plan.changes[1].after == {"model_group_name": "gpt-4o-mini", "temperature": 0.2}
    assert "unmanaged" in plan.changes[1].reason
    assert plan.summary_line() == "Plan: 0 to register, 0 to update, 1 to deregister, 2 characters to rebind."


def test_deregistration_that_would_orphan_is_a_plan_error_listing_characters() -> None:
    m = manifest(model("a"), settings="  prune: true\n")
    state = live([lm("a"), lm("old")], [ch("u1", "old", name="Sage"), ch("u2", "old")])
    with pytest.raises(PlanError) as err:
        build_plan(m, state)
    assert "'Sage' (u1) on 'old'; 'u2' on 'old'" in str(err.value)
    assert "settings.fallback_model" in str(err.value)


def test_without_prune_extra_live_models_are_left_with_a_warning() -> None:
    plan = build_plan(manifest(model("a")), live([lm("a"), lm("extra")], []))
    assert plan.empty
    assert any("'extra' is live but not in the manifest" in w for w in plan.warnings)


def test_temperature_absent_means_leave_as_is_and_equal_floats_are_no_change() -> None:
    m = manifest(model("a"), char("c1", "a") + char("c2", "a", 0.3))
    assert build_plan(m, live([lm("a")], [ch("c1", "a", 0.9), ch("c2", "a", 0.1 + 0.2)])).empty


def test_full_order_register_update_rebind_replace_restore_deregister() -> None:
    m = manifest(model("new") + model("upd", display="U2") + model("rep", name="v2"),
                 char("c1", "new") + char("c2", "rep"),
                 settings="  prune: true\n  fallback_model: gpt-4o\n")
    state = live([lm("upd", display="U1"), lm("rep", name="v1"), lm("gone")],
                 [ch("c1", "gone"), ch("c2", "rep")])
    phases = [c.phase for c in build_plan(m, state).changes]
    assert phases == sorted(phases)
    assert [p.name for p in dict.fromkeys(phases)] == [
        "REGISTER", "UPDATE", "REBIND", "REPLACE", "RESTORE", "DEREGISTER"]


def test_character_missing_from_account_names_the_manifest_line() -> None:
    m = manifest(model("a"), char("ghost", "a"))
    with pytest.raises(PlanError, match=r"m.yaml:\d+: character 'ghost' does not exist"):
        build_plan(m, live([lm("a")], []))


def test_max_deregister_brake_gives_the_numbers_and_can_be_overridden() -> None:
    m = manifest(model("a"), settings="  prune: true\n  max_deregister: 1\n")
    state = live([lm("a"), lm("x"), lm("y")], [])
    with pytest.raises(PlanError, match=r"deregisters or replaces 2 models \(x, y\), more than "
                                        r"settings.max_deregister = 1"):
        build_plan(m, state)
    assert build_plan(m, state, Brakes(allow_deregister=True)).summary()["deregister"] == 2


def test_empty_models_with_prune_is_refused_unless_allow_empty() -> None:
    m = manifest(settings="  prune: true\n")
    state = live([lm("x")], [])
    with pytest.raises(PlanError, match="--allow-empty"):
        build_plan(m, state)
    assert build_plan(m, state, Brakes(allow_empty=True)).summary()["deregister"] == 1


def test_protected_model_is_never_replaced() -> None:
    m = manifest(model("a", name="v2", extra="    protect: true\n"), settings="  fallback_model: gpt-4o\n")
    with pytest.raises(PlanError, match=r"model 'a' is protected"):
        build_plan(m, live([lm("a", name="v1")], []))


def test_verify_order_rejects_a_plan_that_deregisters_a_model_in_use() -> None:
    state = live([lm("a")], [ch("c1", "a")])
    bad = Plan("llm-models", [Change("model", "a", "deregister", Phase.DEREGISTER, {}, None)])
    with pytest.raises(PlanError, match="character c1 on missing model 'a'"):
        bad.verify_order(state, frozenset({"gpt-4o"}))


def test_verify_order_rejects_binding_to_a_model_registered_in_the_same_phase() -> None:
    state = live([], [ch("c1", "gpt-4o")])
    bad = Plan("llm-models", [
        Change("model", "a", "register", Phase.REBIND, None, {}),
        Change("character", "c1", "update", Phase.REBIND, {"model_group_name": "gpt-4o"},
               {"model_group_name": "a"}, ("model_group_name",))])
    # a write in flight may land before its phase-mate: the check runs in the phase, not after it
    with pytest.raises(PlanError, match=r"character c1 on missing model 'a' during phase "
                                        r"'rebind characters'; nothing was written"):
        bad.verify_order(state, frozenset({"gpt-4o"}))


def test_plan_json_round_trips() -> None:
    m = manifest(model("new"), char("c1", "new", 0.4))
    plan = build_plan(m, live([], [ch("c1", "gpt-4o", 0.5, name="Mara")]))
    again = Plan.from_json(plan.to_json())
    assert again.changes == plan.changes and again.to_json() == plan.to_json()
    doc = plan.to_json()
    assert doc["format_version"] == 1
    assert [c["action"] for c in doc["changes"]] == ["register", "update"]
    assert {"resource", "id", "action", "before", "after"} <= set(doc["changes"][0])


def test_character_moving_between_two_replaced_models_is_parked_first() -> None:
    # found by the property test: on 'a' (replaced) and declared onto 'b' (also replaced)
    m = manifest(model("a", name="v2") + model("b", name="v2"), char("c1", "b"),
                 settings="  fallback_model: gpt-4o\n")
    state = live([lm("a", name="v1"), lm("b", name="v1")], [ch("c1", "a")])
    plan = build_plan(m, state)
    moves = [(c.phase.name, c.after["model_group_name"]) for c in plan.changes if not c.is_model]
    assert moves == [("REBIND", "gpt-4o"), ("RESTORE", "b")]


def test_swapping_display_names_is_refused_with_a_two_step_remedy() -> None:
    m = manifest(model("a", display="B") + model("b", display="A"))
    with pytest.raises(PlanError, match=r"display_name 'B' of model 'a' is still held by model 'b'.*two steps"):
        build_plan(m, live([lm("a", display="A"), lm("b", display="B")], []))


def test_registering_a_display_name_a_pruned_model_holds_is_refused() -> None:
    m = manifest(model("new", display="Old name"), settings="  prune: true\n")
    with pytest.raises(PlanError, match=r"still held by model 'old'"):
        build_plan(m, live([lm("old", display="Old name")], []))


def test_taking_a_display_name_released_in_an_earlier_phase_is_fine() -> None:
    # 'b' gives up "X" in the update phase; 'a' takes it when it is replaced, later
    m = manifest(model("a", name="v2", display="X") + model("b", display="Y"),
                 settings="  fallback_model: gpt-4o\n")
    plan = build_plan(m, live([lm("a", name="v1", display="A"), lm("b", display="X")], []))
    assert [(c.action, c.id) for c in plan.changes] == [("update", "b"), ("replace", "a")]


def test_failed_report_names_unmanaged_characters_left_parked() -> None:
    from convai_sync.executor import DONE, FAILED, ApplyReport, Outcome
    from convai_sync.render.text import render_report
    m = manifest(model("a", name="v2"), settings="  fallback_model: gpt-4o\n")
    plan = build_plan(m, live([lm("a", name="v1")], [ch("u1", "a", name="Sage")]))
    park, replace, restore = plan.changes
    report = ApplyReport([Outcome(park, DONE), Outcome(replace, FAILED, "HTTP 500"), Outcome(restore)])
    text = render_report(report)
    assert text.startswith("Apply failed: 1 done, 1 failed, 1 not attempted.")
    assert "were parked on the fallback model and were not moved back yet" in text
    assert "the next apply moves them back" in text
    assert text.rstrip().endswith('character "Sage" (u1)')


def test_character_parked_by_an_earlier_run_is_moved_back_once_its_model_exists() -> None:
    m = manifest(model("a", name="v2"), settings="  fallback_model: gpt-4o\n")
    # a replace of 'a' failed halfway: 'a' is gone, u1 waits on the fallback
    plan = build_plan(m, live([], [ch("u1", "gpt-4o", 0.3)]), parked={"u1": "a"})
    assert kinds(plan) == [("REGISTER", "model", "register", "a"), ("REBIND", "character", "update", "u1")]
    assert plan.changes[1].after == {"model_group_name": "a", "temperature": 0.3}
    assert plan.changes[1].reason == "unmanaged; parked earlier while 'a' was replaced"
    assert plan.meta["parked_resolved"] == []


def test_parked_entries_that_need_nothing_are_resolved() -> None:
    m = manifest(model("a"), char("d1", "a"))
    state = live([lm("a")], [ch("u1", "a"), ch("d1", "gpt-4o"), ch("u2", "gpt-4o")])
    plan = build_plan(m, state, parked={"u1": "a", "d1": "a", "u2": "gone-model", "u3": "a"})
    assert plan.meta["parked_resolved"] == ["d1", "u1", "u2", "u3"]
    assert [c.id for c in plan.changes] == ["d1"]


def test_state_records_characters_left_parked_and_forgets_them_once_back(tmp_path) -> None:
    from convai_sync.executor import DONE, FAILED, ApplyReport, Outcome
    from convai_sync.state import SyncState, record_applied
    m = manifest(model("a", name="v2"), settings="  fallback_model: gpt-4o\n")
    plan = build_plan(m, live([lm("a", name="v1")], [ch("u1", "a")]))
    park, replace, restore = plan.changes
    state = SyncState(tmp_path / "s.json", "acct")
    record_applied(state, plan, ApplyReport([Outcome(park, DONE), Outcome(replace, FAILED), Outcome(restore)]))
    assert state.parked == {"u1": "a"}
    state.save()
    assert SyncState.load(tmp_path / "s.json", "acct").parked == {"u1": "a"}
    again = build_plan(m, live([], [ch("u1", "gpt-4o")]), parked=state.parked)
    record_applied(state, again, ApplyReport([Outcome(c, DONE) for c in again.changes]))
    assert state.parked == {}
    # a park that never happened is not recorded as parked
    fresh = SyncState(None, "acct")
    record_applied(fresh, plan, ApplyReport([Outcome(park, FAILED), Outcome(replace), Outcome(restore)]))
    assert fresh.parked == {}


def test_a_write_only_field_is_recorded_only_once_its_model_was_written() -> None:
    from convai_sync.executor import DONE, FAILED, ApplyReport, Outcome
    from convai_sync.state import SyncState, record_applied
    m = manifest(model("a", extra="    is_uncensored: true\n") + model("b", extra="    is_uncensored: true\n"))
    state = live([lm("a", "m-1", None, None), lm("b", "m-1", None, None)], [], dialect="custom-llm")
    recorded = {"a": {"is_uncensored": False}, "b": {"is_uncensored": False}}
    plan = build_plan(m, state, applied=recorded)
    [to_a, to_b] = plan.changes
    sync = SyncState(None, "acct", fields=dict(recorded))
    record_applied(sync, plan, ApplyReport([Outcome(to_a, DONE), Outcome(to_b, FAILED, "boom")]))
    assert sync.fields == {"a": {"is_uncensored": True}, "b": {"is_uncensored": False}}


# --- exact wording and edges the mutation run found unpinned ------------------------------

def test_a_character_on_a_model_that_exists_nowhere_is_warned_about_and_left_alone() -> None:
    m = manifest(model("a"))
    state = live([lm("a"), lm("extra")], [ch("u1", "gone", name="Sage"), ch("u2", "extra"),
                                          ch("u3", "gpt-4o")])
    plan = build_plan(m, state)
    assert plan.empty
    assert [w for w in plan.warnings if "does not exist" in w] == [
        "character 'Sage' (u1) points at model 'gone', which does not exist; declare the "
        "character in the manifest to repair it"]


def test_a_key_version_shows_in_the_registration_and_an_unrecorded_one_is_sent() -> None:
    m = manifest(model("a", extra="    api_key_version: 3\n") + model("b", extra="    api_key_version: 1\n"))
    plan = build_plan(m, live([lm("b")], []))
    register, rotate = plan.changes
    assert register.after["api_key"] == "(sensitive, version 3)"
    assert (rotate.id, rotate.before["api_key"], rotate.after["api_key"], rotate.sends_key) == (
        "b", "(sensitive, version unknown)", "(sensitive, version unknown \u2192 1)", True)
    plain = build_plan(manifest(model("a")), live([], []))
    assert plain.changes[0].after["api_key"] == "(sensitive)"


def test_only_writes_that_send_the_key_are_marked_so() -> None:
    m = manifest(model("new") + model("moved", name="v2") + model("renamed", display="New name"),
                 settings="  fallback_model: gpt-4o\n")
    state = live([lm("moved", name="v1"), lm("renamed", display="Old name")], [])
    plan = build_plan(m, state)
    sends = {c.id: (c.action.value, c.sends_key) for c in plan.changes}
    assert sends == {"new": ("register", True), "moved": ("replace", True),
                     "renamed": ("update", False)}
    # apply reads only the variables of the keys it sends
    assert plan.meta["key_variables"] == {"new": ["KEY_NEW"], "moved": ["KEY_MOVED"]}


def test_replacing_a_model_a_character_uses_without_fallback_names_both() -> None:
    m = manifest(model("a", name="v2") + model("b", name="v2"), char("c1", "b"))
    with pytest.raises(PlanError, match=r"model 'b' must be replaced and character 'c1' uses it; set "
                                        r"settings.fallback_model so it can be parked there during "
                                        r"the replace"):
        build_plan(m, live([lm("a", name="v1"), lm("b", name="v1")], [ch("c1", "a")]))


def test_a_parked_move_says_why_and_its_restore_names_the_model() -> None:
    m = manifest(model("a", name="v2") + model("b", name="v2"), char("c1", "b"),
                 settings="  fallback_model: gpt-4o\n")
    plan = build_plan(m, live([lm("a", name="v1"), lm("b", name="v1")], [ch("c1", "a", 0.2)]))
    park, restore = [c for c in plan.changes if not c.is_model]
    assert (park.phase, park.reason, park.before, park.after) == (
        Phase.REBIND, "parked while 'b' is replaced", {"model_group_name": "a", "temperature": 0.2},
        {"model_group_name": "gpt-4o", "temperature": 0.2})
    assert (restore.phase, restore.reason, restore.before["model_group_name"]) == (
        Phase.RESTORE, "'b' was replaced", "gpt-4o")
    assert park.to_json()["resource"] == "character"


def test_a_declared_temperature_absent_live_is_set_and_equal_within_epsilon_is_not() -> None:
    from convai_sync.planner import TEMPERATURE_EPSILON as EPS
    m = manifest(model("a"), char("c1", "a", 0.5) + char("c2", "a", 0.5) + char("c3", "a")
                 + char("c4", "a") + char("c5", "a", f"{EPS:.9f}"))  # type: ignore[arg-type]
    state = live([lm("a")], [ch("c1", "a", None), ch("c2", "a", 0.5 + 1e-12), ch("c3", "a", 0.9),
                             ch("c4", "a", None), ch("c5", "a", 0.0)])  # c5: exactly epsilon apart
    [change] = build_plan(m, state).changes
    assert (change.id, change.fields, change.before) == (
        "c1", ("temperature",), {"model_group_name": "a", "temperature": None})


def test_a_parked_character_whose_model_is_not_coming_back_stays_put() -> None:
    m = manifest(model("b"), settings="  fallback_model: gpt-4o\n")
    state = live([lm("b")], [ch("u1", "gpt-4o"), ch("u2", "gpt-4o")])
    plan = build_plan(m, state, parked={"u1": "gone", "u2": "b"})
    assert [(c.id, c.after["model_group_name"]) for c in plan.changes] == [("u2", "b")]
    assert plan.meta["parked_resolved"] == ["u1"]


def test_a_parked_character_already_back_is_still_moved_off_a_model_that_goes() -> None:
    m = manifest(model("keep"), settings="  prune: true\n  fallback_model: gpt-4o\n")
    state = live([lm("keep"), lm("old")], [ch("u1", "old")])
    plan = build_plan(m, state, parked={"u1": "old"})  # recorded, but u1 is back on 'old'
    assert [(c.id, c.after["model_group_name"]) for c in plan.changes if not c.is_model] == [
        ("u1", "gpt-4o")]
    assert plan.meta["parked_resolved"] == ["u1"]


def test_a_character_moved_back_is_not_also_moved_to_the_fallback() -> None:
    m = manifest(model("a"), settings="  prune: true\n  fallback_model: gpt-4o\n")
    state = live([lm("a"), lm("p")], [ch("u1", "p")])  # parked on 'p', which is pruned now
    plan = build_plan(m, state, parked={"u1": "a"})
    assert [(c.id, c.after["model_group_name"]) for c in plan.changes if not c.is_model] == [
        ("u1", "a")]


def test_target_and_replace_accept_what_exists_and_name_what_does_not() -> None:
    from convai_sync.scope import Scope
    m = manifest(model("a"), char("d1", "a"))
    state = live([lm("a"), lm("x")], [ch("u1", "a"), ch("d1", "a")])
    plan = build_plan(m, state, scope=Scope(targets=frozenset({"u1", "x", "a", "d1"})))
    assert plan.warnings[-1] == (
        "--target a, d1, u1, x: this plan is narrowed to these objects and what the safe order "
        "needs for them; every other difference is left for a later apply (as with Terraform's "
        "-target, use it for exceptions, not routinely)")
    with pytest.raises(PlanError) as err:
        build_plan(m, state, scope=Scope(targets=frozenset({"nope"}), replace=frozenset({"x"})))
    assert "--replace" in str(err.value) and "--target" in str(err.value)


def test_replace_sends_the_key_again_and_says_so() -> None:
    from convai_sync.scope import Scope
    m = manifest(model("a"))
    [change] = build_plan(m, live([lm("a")], []), scope=Scope(replace=frozenset({"a"}))).changes
    assert (change.action.value, change.before["api_key"], change.after["api_key"]) == (
        "update", "(sensitive)", "(sensitive, sent again: --replace)")
    assert change.sends_key and "api_key" in change.fields


def test_a_protected_model_names_the_fields_that_force_the_replace() -> None:
    m = manifest(model("a", name="v2", extra="    protect: true\n"), settings="  fallback_model: gpt-4o\n")
    with pytest.raises(PlanError) as err:
        build_plan(m, live([lm("a", name="v1")], []))
    assert ("model 'a' is protected (protect: true) but changing model_name requires replacing "
            "it; remove protect or keep the field as it is") in str(err.value)


# --- the exact words of reasons, warnings and refusals (each is someone's next step) -------

def test_reasons_of_replace_deregister_and_unmanaged_moves_word_for_word() -> None:
    m = manifest(model("r", name="v2") + model("keep"),
                 settings="  prune: true\n  fallback_model: gpt-4o\n  max_deregister: 5\n")
    state = live([lm("r", name="v1"), lm("keep"), lm("gone")],
                 [ch("u1", "gone", 0.3), ch("u2", "r", 0.4)])
    plan = build_plan(m, state)
    by = {(c.id, c.phase.name): c for c in plan.changes}
    replace = by[("r", "REPLACE")]
    assert (replace.reason, replace.before) == (
        "model_name cannot be updated in the llm-models dialect",
        {"model_name": "v1", "base_url": BASE, "is_uncensored": False})
    dereg = by[("gone", "DEREGISTER")]
    assert (dereg.reason, dereg.before, dereg.after) == (
        "not in the manifest; prune is on",
        {"model_name": "m-1", "base_url": BASE, "is_uncensored": False}, None)
    assert by[("u1", "REBIND")].reason == "unmanaged; its model 'gone' is deregistered"
    assert by[("u2", "RESTORE")].reason == "unmanaged; its model 'r' is replaced"
    assert by[("u2", "REBIND")].reason == "parked while 'r' is replaced"


def test_a_declared_binding_has_no_reason_of_its_own() -> None:
    [change] = build_plan(manifest(model("a"), char("c1", "a")), live([lm("a")], [ch("c1", "gpt-4o")])).changes
    assert change.reason == "" and change.to_json()["reason"] == ""


def test_every_extra_live_model_is_warned_about_without_prune() -> None:
    plan = build_plan(manifest(model("a")), live([lm("a"), lm("x1"), lm("x2")], []))
    assert plan.warnings == [
        f"model '{x}' is live but not in the manifest; it is left alone (set settings.prune: true "
        "to deregister it)" for x in ("x1", "x2")]


def test_stranded_and_fallback_refusals_word_for_word() -> None:
    m = manifest(model("a"), settings="  prune: true\n")
    with pytest.raises(PlanError) as err:
        build_plan(m, live([lm("a"), lm("old")], [ch("u1", "old")]))
    assert ("these characters would point at a missing model, and no settings.fallback_model is "
            "set to move them to: 'u1' on 'old'. Set settings.fallback_model, or declare them under "
            "characters") in str(err.value)
    m = manifest(model("fb", name="v2") + model("r", name="v2"), settings="  fallback_model: fb\n")
    with pytest.raises(PlanError) as err:
        build_plan(m, live([lm("fb", name="v1"), lm("r", name="v1")], [ch("u1", "r")]))
    assert ("fallback_model 'fb' is itself being replaced, so it cannot hold characters during "
            "replaces; choose a model that stays (a built-in code is safest)") in str(err.value)
    # a replaced fallback is fine while nobody needs parking
    build_plan(m, live([lm("fb", name="v1"), lm("r", name="v1")], []))


def test_brakes_word_for_word_and_the_limit_itself_is_allowed() -> None:
    three = live([lm("a"), lm("b"), lm("c")], [])
    with pytest.raises(PlanError) as err:
        build_plan(manifest(settings="  prune: true\n"), three)
    assert ("the manifest lists no models and prune is on, so every custom model (3) would be "
            "deregistered; if that is really intended, pass --allow-empty") in str(err.value)
    at_limit = manifest(model("keep"), settings="  prune: true\n  max_deregister: 3\n")
    build_plan(at_limit, live([lm("keep"), lm("a"), lm("b"), lm("c")], []))  # 3 of 3: allowed
    over = manifest(model("keep"), settings="  prune: true\n  max_deregister: 2\n")
    with pytest.raises(PlanError) as err:
        build_plan(over, live([lm("keep"), lm("a"), lm("b"), lm("c")], []))
    assert ("the plan deregisters or replaces 3 models (a, b, c), more than settings.max_deregister "
            "= 2; review it and pass --allow-deregister, or raise the limit") in str(err.value)


def test_a_display_name_released_by_an_update_of_another_field_is_not_released() -> None:
    # 'a' changes its base_url only (an update in place): it keeps its display name
    m = manifest(model("a") + model("b", display="A"))
    state = live([lm("a", display="A", base="https://old.example/v1"), lm("b", display="B")], [])
    with pytest.raises(PlanError, match=r"  - m\.yaml:\d+: display_name 'A' of model 'b' is still "
                                        r"held by model 'a'"):
        build_plan(m, state)


# -- survivors of the planner's mutation run (bench/MUTATION.md) -------------------------

def test_a_model_sharing_its_display_name_with_another_can_still_be_updated() -> None:
    # an account made by hand may hold a display name twice ('b' is not managed); 'a'
    # keeps its own and only changes its base_url, which takes nothing from 'b'
    m = manifest(model("a", display="X"))
    state = live([lm("a", display="X", base="https://old.example/v1"), lm("b", display="X")], [])
    plan = build_plan(m, state)
    assert [(c.action, c.id, c.fields) for c in plan.changes] == [("update", "a", ("base_url",))]


def test_an_update_of_another_field_releases_no_display_name_even_for_a_later_phase() -> None:
    # 'a' changes only its base_url (UPDATE) and keeps "A"; 'b', replaced later
    # (REPLACE), cannot take "A": an update that leaves the name releases nothing
    m = manifest(model("a") + model("b", name="v2", display="A"),
                 settings="  fallback_model: gpt-4o\n")
    state = live([lm("a", display="A", base="https://old.example/v1"), lm("b", name="v1", display="B")],
                 [])
    with pytest.raises(PlanError, match=r"display_name 'A' of model 'b' is still held by model 'a'"):
        build_plan(m, state)


def test_a_name_taken_after_one_that_was_released_is_still_checked() -> None:
    # 'b' takes "X", released by 'a' in an earlier phase (fine); 'c' then takes "Z",
    # which 'd' (not managed) keeps: that must still be refused
    m = manifest(model("a", display="Y") + model("b", name="v2", display="X")
                 + model("c", display="Z"),
                 settings="  fallback_model: gpt-4o\n")
    state = live([lm("a", display="X"), lm("b", name="v1", display="B"), lm("d", display="Z")], [])
    with pytest.raises(PlanError) as err:
        build_plan(m, state)
    assert err.value.problems == [
        "m.yaml:15: display_name 'Z' of model 'c' is still held by model 'd' when it would be set, "
        "and Convai requires display_name values to be unique; apply in two steps: first give "
        "'d' another display_name (or remove it), apply, then make this change"]


def test_every_unknown_char_id_is_named_not_just_the_first() -> None:
    m = manifest(model("a"), char("ghost-1", "a") + char("c1", "a") + char("ghost-2", "a"))
    with pytest.raises(PlanError) as err:
        build_plan(m, live([lm("a")], [ch("c1", "a")]))
    assert [p.split(":", 2)[2].split(";")[0] for p in err.value.problems] == [
        " character 'ghost-1' does not exist in the account",
        " character 'ghost-2' does not exist in the account"]


def test_every_field_that_forces_a_replace_is_named() -> None:
    # no dialect today has two fields it cannot update; the planner is generic, so a
    # platform with two of them gets both named, in the reason and in protect's refusal
    from dataclasses import replace as with_
    from convai_sync.planner import plan_desired
    from convai_sync.providers.convai import capabilities
    caps = with_(capabilities("llm-models"), updatable=frozenset({"display_name", "is_uncensored"}))
    state = live([lm("a", name="v1", base="https://old.example/v1")], [])
    plan = plan_desired(manifest(model("a", name="v2")).desired, state, caps)
    [replace] = plan.changes
    assert replace.forces_replace == ("model_name", "base_url")
    assert replace.reason == "model_name, base_url cannot be updated in the llm-models dialect"
    protected = manifest(model("a", name="v2", extra="    protect: true\n"))
    with pytest.raises(PlanError, match=r"but changing model_name, base_url requires replacing it"):
        plan_desired(protected.desired, state, caps)


A1 = "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11"


def vapi_manifest(binding: str = "") -> object:
    return parse_manifest(
        "version: 1\nplatform: vapi\nmodels:\n"
        "  - name: gw\n    url: https://gw.example/v1\n    model: gpt-4o-mini\n"
        "    api_key: ${GW_KEY}\n"
        f"assistants:\n  - id: {A1}\n    model: gw\n" + binding, "v.yaml")


def test_a_vapi_assistant_bound_to_a_credential_takes_its_url_and_model() -> None:
    # the url and model are implied by the credential the assistant is bound to
    state = LiveState("vapi", {"gw": ModelState("gw", {})}, {A1: ConsumerState(
        A1, "gw", {"url": "https://old.example/v1", "model": "gpt-4o-mini", "temperature": 0.5})},
        platform="vapi")
    [change] = build_plan(vapi_manifest(), state).changes
    assert (change.id, change.fields) == (A1, ("url",))
    assert change.after["url"] == "https://gw.example/v1"


def langbot_manifest(base: str = "https://gw.example/v1") -> object:
    return parse_manifest(
        "version: 1\nplatform: langbot\nmodels:\n"
        f"  - key: turbo\n    name: gpt-4o-mini\n    base_url: {base}\n"
        "    api_keys: ['${GW_KEY}']\n"
        "pipelines: []\n", "l.yaml")


def langbot_live(base: str, keys: str) -> LiveState:
    fields = {"name": "gpt-4o-mini", "requester": "openai-chat-completions", "base_url": base,
              "abilities": [], "extra_args": {}, "context_length": None, "api_keys": keys}
    return LiveState("langbot", {"turbo": ModelState("turbo", fields)}, {}, platform="langbot")


def test_a_langbot_base_url_change_sends_the_key_with_it() -> None:
    # LangBot keeps the key on the provider of (requester, base_url): a new base_url
    # means a new provider, which needs the key
    [change] = build_plan(langbot_manifest(), langbot_live("https://old.example/v1", "(sensitive)")).changes
    assert (change.action, change.fields, change.sends_key) == ("update", ("base_url",), True)


def test_a_langbot_key_that_differs_and_is_replaced_is_one_field_sent_once() -> None:
    from convai_sync.providers.langbot.client import KEYS_DIFFER
    from convai_sync.scope import Scope
    plan = build_plan(langbot_manifest(), langbot_live("https://gw.example/v1", KEYS_DIFFER),
                      scope=Scope(replace=frozenset({"turbo"})))
    [change] = plan.changes
    assert (change.action, change.fields, change.sends_key) == ("update", ("api_keys",), True)
