"""Property tests for Vapi: for any account (credentials, assistants pinning
none, one, two or a missing credential, assistants on other providers) and any
valid manifest, apply converges, no assistant ever pins a missing credential,
nothing outside the managed fields changes, and no key is ever printed."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from convai_sync.emulator.faults import Faults
from convai_sync.errors import ApiError, ConvaiSyncError, PlanError
from convai_sync.executor import execute
from convai_sync.manifest import LoadedManifest, parse_manifest, resolve_secrets
from convai_sync.plan import Plan
from convai_sync.planner import Brakes, build_plan
from convai_sync.providers.vapi import VapiClient
from convai_sync.providers.vapi.baseline import unmanaged_content
from convai_sync.providers.vapi.emulator import VapiEmulator
from convai_sync.render.text import render_plan, render_report
from convai_sync.retry import RetryPolicy

KEY = "vapi-prop-account-key"
NAMES = [f"cred-{i}" for i in range(5)]
URLS = ["https://a.example/v1", "https://b.example/v1"]
MODELS = ["m-small", "m-large"]
MISSING = "99999999-9999-4999-8999-999999999999"
CANARY = {f"KEY_{i}": f"sk-CANARY-vapi-{i}-7c2e" for i in range(len(NAMES))}
FAST = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01, max_total=10)
BRAKES = Brakes(allow_empty=True, allow_deregister=True)


def aid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


@dataclass
class Scenario:
    seed: dict[str, Any]
    manifest: dict[str, Any]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    live = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    credentials = [{"name": n, "apiKey": "sk-old-live-key"} for n in live]
    credentials.append({"name": "oa", "provider": "openai", "apiKey": "sk-old-openai-key"})
    pin_choices = [[], [MISSING], ["oa"]] + [[n] for n in live] + [[a, b] for a in live for b in live if a < b]
    assistants = []
    for i in range(draw(st.integers(1, 7))):
        model = {"provider": "custom-llm", "url": draw(st.sampled_from(URLS)),
                 "model": draw(st.sampled_from(MODELS)),
                 "messages": [{"role": "system", "content": f"prompt {i}"}], "toolIds": [f"t{i}"]}
        temperature = draw(st.sampled_from([None, 0.2, 1.5]))
        if temperature is not None:
            model["temperature"] = temperature
        assistants.append({"id": aid(i), "name": f"A{i}", "model": model,
                           "credentialIds": draw(st.sampled_from(pin_choices)) + (
                               ["oa"] if draw(st.booleans()) else [])})
    for j in range(draw(st.integers(0, 2))):  # other providers: never consumers
        assistants.append({"id": aid(100 + j), "name": f"O{j}", "model": {"provider": "openai",
                           "model": "gpt-4o"}, "credentialIds": draw(st.sampled_from(pin_choices))})
    for a in assistants:
        a["credentialIds"] = list(dict.fromkeys(a["credentialIds"]))
    wanted = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1))
    models = []
    for name in wanted:
        spec = {"name": name, "url": draw(st.sampled_from(URLS)), "model": draw(st.sampled_from(MODELS)),
                "api_key": f"${{KEY_{NAMES.index(name)}}}"}
        models.append(spec)
    declared = []
    custom = [a["id"] for a in assistants if a["model"]["provider"] == "custom-llm"]
    for a in draw(st.lists(st.sampled_from(custom), unique=True, min_size=1)):
        spec = {"id": a, "model": draw(st.sampled_from(wanted))}
        temperature = draw(st.sampled_from([None, 0.0, 0.7, 2.0]))
        if temperature is not None:
            spec["temperature"] = temperature
        declared.append(spec)
    settings_: dict[str, Any] = {"prune": draw(st.booleans())}
    fallback = draw(st.sampled_from([None, *wanted, *wanted]))
    if fallback:
        settings_["fallback_model"] = fallback
    return Scenario({"credentials": credentials, "assistants": assistants},
                    {"version": 1, "platform": "vapi", "settings": settings_, "models": models,
                     "assistants": declared})


@pytest.fixture(scope="module")
def emulator() -> Iterator[VapiEmulator]:
    emu = VapiEmulator(api_key=KEY)
    emu.start()
    yield emu
    emu.stop()


def prepare(emu: VapiEmulator, sc: Scenario, faults: Faults) -> LoadedManifest:
    emu.faults = Faults()
    emu.load_seed(sc.seed)
    emu.clear_log()
    emu.faults = faults
    return parse_manifest(yaml.safe_dump(sc.manifest, sort_keys=False), "generated.yaml")


def plan_once(loaded: LoadedManifest, client: VapiClient) -> Plan:
    return build_plan(loaded, client.read_state("vapi", loaded.desired, {}), BRAKES)


def assert_state_matches(emu: VapiEmulator, loaded: LoadedManifest, before: dict[str, dict]) -> None:
    """Checked against the emulator's own state, not through our planner."""
    creds, assistants = emu.credentials(), emu.assistants()
    custom = {cid: c["name"] for cid, c in creds.items() if c["provider"] == "custom-llm"}
    by_name = {name: cid for cid, name in custom.items()}
    m = loaded.manifest
    for spec in m.models:
        assert creds[by_name[spec.name]]["secret_api_key"] == CANARY[spec.api_key[2:-1]] or \
            creds[by_name[spec.name]]["secret_api_key"] == "sk-old-live-key"
    if m.settings.prune:
        assert set(custom.values()) == {spec.name for spec in m.models}
    endpoints = {spec.name: (spec.url, spec.model) for spec in m.models}
    for spec in m.assistants:
        a = assistants[spec.id]
        assert [custom[c] for c in a["credentialIds"] if c in custom] == [spec.model]
        assert (a["model"]["url"], a["model"]["model"]) == endpoints[spec.model]
        if spec.temperature is not None:
            assert a["model"]["temperature"] == pytest.approx(spec.temperature)
    for a_id, a in assistants.items():  # nothing outside the managed fields ever changes
        assert unmanaged_content(a) == unmanaged_content(before[a_id])
        assert all(c in creds for c in a.get("credentialIds") or () if c != MISSING)


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        for value in CANARY.values():
            assert value not in text


def refused_safely(err: ConvaiSyncError, emu: VapiEmulator, sc: Scenario) -> None:
    """The legitimate refusals: assistants stranded with no fallback, or a pruned
    credential that an assistant on another provider pins. Nothing written."""
    text = str(err)
    event("refused: " + ("stranded" if "fallback_model" in text else "pinned elsewhere"))
    assert ("fallback_model" in text and "fallback_model" not in sc.manifest["settings"]) or \
        "prune would delete credentials" in text, text
    assert emu.writes() == []
    assert_no_canary(text)


@pytest.mark.long
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_vapi_apply_converges_and_never_orphans_60_examples(emulator: VapiEmulator,
                                                            sc: Scenario) -> None:
    loaded = prepare(emulator, sc, Faults())
    before = emulator.assistants()
    keys = resolve_secrets(loaded, CANARY).keys
    with VapiClient(emulator.url, KEY, retry=FAST) as client:
        try:
            plan = plan_once(loaded, client)
        except (PlanError, ConvaiSyncError) as err:
            return refused_safely(err, emulator, sc)
        report = execute(plan, client, keys)
        event(f"applied {'some' if plan.changes else 'no'} changes")
        assert report.ok, report.to_json()
        assert plan_once(loaded, client).empty
    assert emulator.orphan_events == []
    assert_state_matches(emulator, loaded, before)
    assert_no_canary(render_plan(plan), json.dumps(plan.to_json()), render_report(report),
                     json.dumps(report.to_json()), json.dumps(client.memo()),
                     *(str(r.body) for r in emulator.requests))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), fault_seed=st.integers(0, 2**16))
def test_vapi_converges_within_3_applies_under_30pct_faults_30_examples(
        emulator: VapiEmulator, sc: Scenario, fault_seed: int) -> None:
    loaded = prepare(emulator, sc, Faults())
    before = emulator.assistants()
    emulator.faults = Faults(rate=0.3, after_commit=0.3, seed=fault_seed)
    keys = resolve_secrets(loaded, CANARY).keys
    outputs: list[str] = []
    with VapiClient(emulator.url, KEY, retry=FAST) as client:
        for _ in range(3):
            try:
                plan = plan_once(loaded, client)
            except ApiError as err:  # the read itself gave up: that run did nothing
                outputs.append(str(err))
                continue
            except (PlanError, ConvaiSyncError) as err:
                return refused_safely(err, emulator, sc)
            report = execute(plan, client, keys)
            outputs += [render_plan(plan), render_report(report), json.dumps(report.to_json())]
            event(f"apply {'succeeded' if report.ok else 'failed'}")
            if report.ok:
                break
        emulator.faults = Faults()
        assert plan_once(loaded, client).empty, "\n".join(outputs)
    assert emulator.orphan_events == []
    assert_state_matches(emulator, loaded, before)
    assert_no_canary(*outputs)
