"""Property tests: for any live account and any valid manifest, apply converges,
no character ever points at a missing model, and no secret is ever printed."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ACCOUNT_KEY
from convai_sync.emulator import Emulator, Faults
from convai_sync.errors import ApiError, PlanError
from convai_sync.executor import execute
from convai_sync.manifest import LoadedManifest, parse_manifest, resolve_secrets
from convai_sync.plan import Plan
from convai_sync.planner import Brakes, build_plan
from convai_sync.providers.convai import ConvaiClient
from convai_sync.render.text import render_plan, render_report
from convai_sync.retry import RetryPolicy

GROUPS = [f"g{i}" for i in range(6)]
BUILTINS = ["gpt-4o", "gpt-4o-mini", "claude-haiku"]
CHARS = [f"c{i}" for i in range(8)]
CANARY = {f"KEY_{g.upper()}": f"sk-CANARY-{g}-5e1f0a" for g in GROUPS}
FAST = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01, max_total=10)
BRAKES = Brakes(allow_empty=True, allow_deregister=True)


@dataclass
class Scenario:
    dialect: str
    seed: dict[str, Any]
    manifest: dict[str, Any]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    dialect = draw(st.sampled_from(["llm-models", "custom-llm"]))
    live_groups = draw(st.lists(st.sampled_from(GROUPS), unique=True, max_size=5))

    def fields(group: str) -> dict[str, Any]:
        return {"model_name": draw(st.sampled_from(["m-a", "m-b"])),
                "base_url": draw(st.sampled_from(["https://a.example/v1", "https://b.example/v1"])),
                "display_name": f"{group} D{draw(st.integers(0, 1))}",  # unique per model
                "is_uncensored": draw(st.booleans())}

    models = [{"model_group_name": g, "api_key": "sk-old-live-key", **fields(g)} for g in live_groups]
    live_chars = draw(st.lists(st.sampled_from(CHARS), unique=True, min_size=1))
    characters = [{"character_id": c, "character_name": f"Char {c}",
                   "model_group_name": draw(st.sampled_from(live_groups + BUILTINS)),
                   "temperature": draw(st.sampled_from([0.1, 0.5, 0.9]))} for c in live_chars]
    wanted = draw(st.lists(st.sampled_from(GROUPS), unique=True))
    m_models = []
    for g in wanted:
        spec = {"model_group_name": g, "api_key": f"${{KEY_{g.upper()}}}", **fields(g)}
        if dialect == "custom-llm" or draw(st.booleans()):
            del spec["display_name"]  # custom-llm cannot set it: a plan error
        m_models.append(spec)
    declared = draw(st.lists(st.sampled_from(live_chars), unique=True))
    m_chars = []
    for c in declared:
        spec = {"char_id": c, "model_group_name": draw(st.sampled_from(wanted + BUILTINS))}
        temperature = draw(st.sampled_from([None, 0.0, 0.3, 1.0]))
        if temperature is not None:
            spec["temperature"] = temperature
        m_chars.append(spec)
    settings_ = {"prune": draw(st.booleans()),
                 "api_dialect": draw(st.sampled_from(["auto", dialect]))}
    fallback = draw(st.sampled_from([None, "gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]))
    if fallback:
        settings_["fallback_model"] = fallback
    return Scenario(dialect, {"models": models, "characters": characters},
                    {"version": 1, "settings": settings_, "models": m_models, "characters": m_chars})


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Emulator]]:
    emus = {d: Emulator(dialect=d, account_key=ACCOUNT_KEY) for d in ("llm-models", "custom-llm")}
    for emu in emus.values():
        emu.start()
    yield emus
    for emu in emus.values():
        emu.stop()


def prepare(emus: dict[str, Emulator], sc: Scenario, faults: Faults) -> tuple[Emulator, LoadedManifest]:
    emu = emus[sc.dialect]
    emu.faults = Faults()
    emu.load_seed(sc.seed)
    emu.clear_log()
    emu.faults = faults
    return emu, parse_manifest(yaml.safe_dump(sc.manifest, sort_keys=False), "generated.yaml")


def plan_once(loaded: LoadedManifest, client: ConvaiClient) -> Plan:
    return build_plan(loaded, client.read_state(loaded.manifest.settings.api_dialect), BRAKES)


def assert_state_matches(emu: Emulator, loaded: LoadedManifest) -> None:
    """Checked against the emulator's own state, not through our planner."""
    models, chars = emu.models(), emu.characters()
    for spec in loaded.manifest.models:
        live = models[spec.model_group_name]
        assert (live["model_name"], live["base_url"]) == (spec.model_name, spec.base_url)
        if emu.dialect == "llm-models":
            assert live["is_uncensored"] == spec.is_uncensored
            if spec.display_name is not None:
                assert live["display_name"] == spec.display_name
    if loaded.manifest.settings.prune:
        assert set(models) == {m.model_group_name for m in loaded.manifest.models}
    for spec in loaded.manifest.characters:
        assert chars[spec.char_id]["model_group_name"] == spec.model_group_name
        if spec.temperature is not None:
            assert chars[spec.char_id]["temperature"] == pytest.approx(spec.temperature)
    known = set(models) | set(BUILTINS)
    assert all(c["model_group_name"] in known for c in chars.values())


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        for value in CANARY.values():
            assert value not in text


def refused_safely(err: PlanError, emu: Emulator, loaded: LoadedManifest) -> None:
    """The only legitimate refusal here: characters that would be stranded and
    no fallback to move them to. Nothing may have been written."""
    assert loaded.manifest.settings.fallback_model is None, str(err)
    assert "fallback_model" in str(err)
    assert emu.writes() == []
    assert_no_canary(str(err))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_apply_converges_and_never_orphans_60_examples(emulators: dict[str, Emulator], sc: Scenario) -> None:
    emu, loaded = prepare(emulators, sc, Faults())
    keys = resolve_secrets(loaded, CANARY).keys
    with ConvaiClient(emu.url, ACCOUNT_KEY, retry=FAST) as client:
        try:
            plan = plan_once(loaded, client)
        except PlanError as err:
            return refused_safely(err, emu, loaded)
        report = execute(plan, client, keys)
        assert report.ok, report.to_json()
        assert plan_once(loaded, client).empty
    assert emu.orphan_events == []
    assert_state_matches(emu, loaded)
    assert_no_canary(render_plan(plan), json.dumps(plan.to_json()), render_report(report),
                     json.dumps(report.to_json()), *(str(r.body) for r in emu.requests))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), fault_seed=st.integers(0, 2**16))
def test_converges_within_3_applies_under_30pct_faults_40_examples(
        emulators: dict[str, Emulator], sc: Scenario, fault_seed: int) -> None:
    emu, loaded = prepare(emulators, sc, Faults(rate=0.3, after_commit=0.3, seed=fault_seed))
    keys = resolve_secrets(loaded, CANARY).keys
    outputs: list[str] = []
    with ConvaiClient(emu.url, ACCOUNT_KEY, retry=FAST) as client:
        for _ in range(3):
            try:
                plan = plan_once(loaded, client)
            except PlanError as err:
                return refused_safely(err, emu, loaded)
            except ApiError as err:  # the read itself gave up: that run did nothing
                outputs.append(str(err))
                continue
            report = execute(plan, client, keys)
            outputs += [render_plan(plan), render_report(report), json.dumps(report.to_json())]
            if report.ok:
                break
        emu.faults = Faults()
        assert plan_once(loaded, client).empty, "\n".join(outputs)
    assert emu.orphan_events == []
    assert_state_matches(emu, loaded)
    assert_no_canary(*outputs)
