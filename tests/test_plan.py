"""Plan and Change as data: the JSON a saved plan is written in (a contract other
tools script against), plans saved by earlier releases, and the summary."""
from __future__ import annotations

import json

import pytest

from convai_sync.errors import PlanError
from convai_sync.plan import Action, Change, Phase, Plan, Purpose, Resource


def full_plan(platform: str = "convai", noun: str = "character") -> Plan:
    changes = [
        Change("model", "new", "register", Phase.REGISTER, None, {"model_name": "m"},
               ("model_name", "api_key"), sends_key=True),
        Change("model", "moved", "replace", Phase.REPLACE, {"model_name": "a"}, {"model_name": "b"},
               ("model_name",), reason="model_name cannot be updated", forces_replace=("model_name",),
               sends_key=True),
        Change("character", "c1", "update", Phase.REBIND, {"model_group_name": "moved"},
               {"model_group_name": "gpt-4o"}, ("model_group_name",), "parked while 'moved' is replaced",
               "Sage", purpose=Purpose.PARKED),
        Change("character", "c1", "update", Phase.RESTORE, {"model_group_name": "gpt-4o"},
               {"model_group_name": "moved"}, ("model_group_name",), purpose=Purpose.UNMANAGED),
        Change("model", "old", "deregister", Phase.DEREGISTER, {"model_name": "x"}, None),
        Change("model", "upd", "update", Phase.UPDATE, {"display_name": "A"}, {"display_name": "B"},
               ("display_name",)),
        # a field bound to the key (LangBot's base_url): sends it, though no rule of old says so
        Change("model", "kb", "update", Phase.UPDATE, {"base_url": "a"}, {"base_url": "b"},
               ("base_url",), sends_key=True),
    ]
    return Plan("llm-models", changes, ["a warning"], {"requests": 2}, platform, noun)


def test_changes_are_kept_in_phase_order_and_stable_inside_a_phase() -> None:
    plan = full_plan()
    assert [(c.phase.name, c.id) for c in plan.changes] == [
        ("REGISTER", "new"), ("UPDATE", "upd"), ("UPDATE", "kb"), ("REBIND", "c1"),
        ("REPLACE", "moved"), ("RESTORE", "c1"), ("DEREGISTER", "old")]
    assert [p.name for p, _ in plan.phases()] == ["REGISTER", "UPDATE", "REBIND", "REPLACE",
                                                  "RESTORE", "DEREGISTER"]


def test_the_json_document_field_by_field() -> None:
    doc = full_plan().to_json()
    assert (doc["format_version"], doc["platform"], doc["dialect"]) == (1, "convai", "llm-models")
    assert doc["warnings"] == ["a warning"] and doc["meta"] == {"requests": 2}
    assert doc["changes"][3] == {
        "resource": "character", "id": "c1", "action": "update", "phase": "rebind",
        "before": {"model_group_name": "moved"}, "after": {"model_group_name": "gpt-4o"},
        "fields": ["model_group_name"], "reason": "parked while 'moved' is replaced", "name": "Sage",
        "forces_replace": [], "purpose": "parked", "sends_key": False}
    assert doc["changes"][4]["forces_replace"] == ["model_name"]
    assert doc["summary"] == full_plan().summary()


@pytest.mark.parametrize("platform,dialect,noun", [("convai", "llm-models", "character"),
                                                    ("langbot", "langbot", "pipeline"),
                                                    ("vapi", "vapi", "assistant")])
def test_json_round_trips_exactly_on_every_platform(platform: str, dialect: str, noun: str) -> None:
    from convai_sync.providers.registry import platform as target
    plan = full_plan(platform, noun)
    plan.dialect, plan.model_ref = dialect, target(platform).capabilities(dialect).model_ref
    text = json.dumps(plan.to_json())
    back = Plan.from_json(json.loads(text))
    assert back.to_json() == plan.to_json()
    assert (back.platform, back.noun, back.dialect) == (platform, noun, dialect)
    assert back.changes == plan.changes


def test_a_plan_saved_before_purposes_and_key_flags_reads_them_from_its_reasons() -> None:
    doc = full_plan().to_json()
    for change in doc["changes"]:
        del change["purpose"], change["sends_key"]
    del doc["platform"]
    doc["changes"][5]["reason"] = "unmanaged; parked earlier while 'moved' was replaced"
    doc["changes"][3]["reason"] = "unmanaged; its model 'x' is deregistered"
    doc["changes"][2]["fields"] = ["api_key"]  # a rotation, as saved plans of old wrote it
    del doc["warnings"], doc["meta"]
    back = Plan.from_json(doc)
    assert (back.platform, back.warnings, back.meta) == ("convai", [], {})
    assert [(c.id, c.purpose, c.sends_key) for c in back.changes] == [
        ("new", Purpose.DECLARED, True), ("upd", Purpose.DECLARED, False),
        ("kb", Purpose.DECLARED, True), ("c1", Purpose.UNMANAGED, False),
        ("moved", Purpose.DECLARED, True), ("c1", Purpose.UNPARKED, False),
        ("old", Purpose.DECLARED, False)]
    parked = full_plan().to_json()["changes"][3]
    del parked["purpose"]
    assert Change.from_json(parked).purpose is Purpose.PARKED
    rotation = {**full_plan().to_json()["changes"][1], "fields": ["api_key"]}
    del rotation["sends_key"]
    assert Change.from_json(rotation).sends_key
    minimal = {"resource": "model", "id": "m", "action": "update", "phase": "update",
               "before": {}, "after": {}}
    change = Change.from_json(minimal)
    assert (change.fields, change.forces_replace, change.sends_key) == ((), (), False)


def test_a_change_takes_the_json_words_for_resource_and_action() -> None:
    change = Change("character", "c1", "update", Phase.REBIND, {}, {})
    assert (change.resource, change.action) == (Resource.CONSUMER, Action.UPDATE)
    assert Change("model", "m", "register", Phase.REGISTER, None, {}).resource is Resource.MODEL
    assert Change("pipeline", "p", "update", Phase.REBIND, {}, {}).resource is Resource.CONSUMER
    assert Change(Resource.MODEL, "m", Action.DEREGISTER, Phase.DEREGISTER, {}, None).is_model
    with pytest.raises(ValueError):
        Change("model", "m", "rename", Phase.UPDATE, {}, {})


def test_summary_counts_and_line() -> None:
    plan = full_plan()
    assert plan.summary() == {"register": 1, "update": 2, "replace": 1, "deregister": 1,
                              "characters": 1, "rebind": 1, "consumer_update": 0, "changes": 7}
    assert plan.summary_line() == (
        "Plan: 1 to register, 2 to update, 1 to replace, 1 to deregister, 1 character to rebind "
        "(7 changes: 1 character move twice, onto the fallback and back, while their model is "
        "replaced).")
    # a consumer counts as rebound when any of its changes moves it
    moved_then_tuned = Plan("llm-models", [bind("c1", "a"), bind("c1", "a", Phase.RESTORE, ("temperature",))])
    assert (moved_then_tuned.summary()["rebind"], moved_then_tuned.summary()["consumer_update"]) == (1, 0)
    one = Plan("llm-models", [Change("character", "c1", "update", Phase.REBIND, {}, {})], noun="assistant")
    assert one.summary_line() == ("Plan: 0 to register, 0 to update, 0 to deregister, "
                                  "0 assistants to rebind, 1 assistant to update.")
    assert Plan("llm-models").summary_line() == "No changes. The account matches the manifest."


def test_phase_numbers_titles_and_the_models_whose_key_is_sent() -> None:
    plan = full_plan()
    assert [plan.phase_number(p) for p, _ in plan.phases()] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    from convai_sync.providers.registry import platform
    caps = platform("langbot").capabilities("langbot")
    made = Plan.for_caps(caps, [], ["w"], {"m": 1})
    assert (made.platform, made.noun, made.model_ref, made.warnings, made.meta) == (
        "langbot", caps.consumer_noun, caps.model_ref, ["w"], {"m": 1})
    assert caps.model_ref != "model_group_name"
    assert Phase.REBIND.title("pipeline") == "rebind pipelines"
    assert Phase.REBIND.title() == "rebind characters"
    assert plan.key_models() == {"new", "moved", "kb"}


def _live(models: list[str], consumers: dict[str, str]):
    from convai_sync.model import ConsumerState, LiveState, ModelState
    return LiveState("llm-models", {m: ModelState(m) for m in models},
                     {cid: ConsumerState(cid, m) for cid, m in consumers.items()})


def bind(cid: str, to: str, phase: Phase = Phase.REBIND, fields: tuple[str, ...] = ("model_group_name",)) -> Change:
    return Change("character", cid, "update", phase, {}, {"model_group_name": to, "temperature": 0.1},
                  fields)


def test_verify_order_tolerates_a_character_already_broken_that_stays_or_is_repaired() -> None:
    builtins = frozenset({"gpt-4o"})
    live = _live(["a", "x"], {"u1": "gone", "u2": "gone", "u3": "a"})
    # u1 stays on its missing model (not ours to break), through every phase; u2 is repaired
    Plan("llm-models", [bind("u2", "a"), Change("model", "z", "register", Phase.REGISTER, None, {}),
                        Change("model", "x", "deregister", Phase.DEREGISTER, {}, None)]).verify_order(
        live, builtins)
    # a temperature-only change does not move a character
    Plan("llm-models", [bind("u3", "gone", fields=("temperature",))]).verify_order(live, builtins)


def test_verify_order_refuses_moving_onto_a_missing_model_even_one_already_broken() -> None:
    live = _live(["a"], {"u1": "gone"})
    with pytest.raises(PlanError, match=r"character u1 on missing model 'other'"):
        Plan("llm-models", [bind("u1", "other")]).verify_order(live, frozenset())
    # once repaired, a character is watched again: moved back onto the missing model later
    repaired_then_broken = [bind("u1", "a"), bind("u1", "gone", Phase.RESTORE)]
    with pytest.raises(PlanError, match=r"character u1 on missing model 'gone' during phase "
                                        r"'move characters onto replaced models'; nothing was "
                                        r"written\. Please report this with the plan JSON\."):
        Plan("llm-models", repaired_then_broken).verify_order(live, frozenset())


def test_verify_order_knows_builtins_registrations_and_deregistrations() -> None:
    live = _live(["a"], {"u1": "a"})
    ok = [Change("model", "b", "register", Phase.REGISTER, None, {}), bind("u1", "b"),
          bind("u1", "gpt-4o", Phase.RESTORE), Change("model", "a", "deregister", Phase.DEREGISTER, {}, None)]
    Plan("llm-models", ok).verify_order(live, frozenset({"gpt-4o"}))
    with pytest.raises(PlanError, match="missing model 'gpt-4o'"):
        Plan("llm-models", ok).verify_order(live, frozenset())
    with pytest.raises(PlanError, match="character u1 on missing model 'a' during phase 'deregister"):
        Plan("llm-models", [Change("model", "a", "deregister", Phase.DEREGISTER, {}, None)]).verify_order(
            live, frozenset())
