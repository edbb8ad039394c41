"""Property tests over the whole input space: any live account (characters on
missing models, display names to swap, a lean character list), any valid manifest
(protect, api_key_version, unknown char_ids, brakes on or off), any state left by
an earlier run (parked characters, recorded key versions), an API that disagrees
with the client where the contract allows (Quirks, lean reads, latency,
max_inflight), with and without faults. Apply either refuses with a known reason
and writes nothing, or converges in ONE apply (the design promises it: transient
failures are retried, lost replies are checked against live state); no character
ever points at a missing model; no secret appears in anything the tool prints or
writes (never the emulator's request log: the emulator redacts that itself)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import ACCOUNT_KEY
from convai_sync.emulator import Emulator, Faults, Quirks
from convai_sync.engine import Options, apply_plan, make_plan
from convai_sync.errors import PlanError
from convai_sync.manifest import LoadedManifest, parse_manifest, resolve_secrets
from convai_sync.plan import Plan
from convai_sync.planner import Brakes
from convai_sync.providers.convai import ConvaiClient
from convai_sync.render.markdown import render_plan_markdown
from convai_sync.render.text import render_plan, render_report
from convai_sync.retry import RetryPolicy
from convai_sync.saved_plan import saved_document
from convai_sync.state import SyncState

GROUPS = [f"g{i}" for i in range(6)]
BUILTINS = ["gpt-4o", "gpt-4o-mini", "claude-haiku"]
CHARS = [f"c{i}" for i in range(8)]
GONE = "gone-model"  # a model no longer in the account that characters still point at
CANARY = {f"KEY_{g.upper()}": f"sk-CANARY-{g}-5e1f0a" for g in GROUPS}
# many quick attempts: a 429 storm under max_inflight must not exhaust them
FAST = RetryPolicy(max_attempts=30, base_delay=0.001, max_delay=0.01, max_total=20)
# the refusals a safe planner may answer with; anything else is a bug
REFUSALS = ("fallback_model", "is protected", "does not exist in the account", "unique",
            "max_deregister", "--allow-empty")


@dataclass
class Scenario:
    dialect: str
    seed: dict[str, Any]
    manifest: dict[str, Any]
    versions: dict[str, int] = field(default_factory=dict)  # recorded by an earlier run
    parked: dict[str, str] = field(default_factory=dict)
    brakes: Brakes = Brakes(allow_empty=True, allow_deregister=True)


@dataclass
class Switches:
    """How the emulated API behaves this time (all allowed by CONVAI_API.md)."""

    quirks: Quirks
    lean_list: bool
    lean_get: bool
    latency_ms: float
    max_inflight: int | None


@st.composite
def switches(draw: st.DrawFn) -> Switches:
    lean_list = draw(st.booleans())
    return Switches(
        Quirks(retry_after=draw(st.booleans()), read_lag=draw(st.sampled_from([0.0, 0.0, 0.03])),
               unnamed_display=draw(st.sampled_from(["code", "model", "blank"])),
               errors_in_200=draw(st.booleans())),
        # both lean leaves no way to read a character's model: refused (test_scaling)
        lean_list, not lean_list and draw(st.booleans()),
        draw(st.sampled_from([0.0, 0.0, 2.0])), draw(st.sampled_from([None, None, 2, 4])))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    dialect = draw(st.sampled_from(["llm-models", "custom-llm"]))
    live_groups = draw(st.lists(st.sampled_from(GROUPS), unique=True, max_size=5))
    displays = [f"{g} D{i}" for g in GROUPS for i in (0, 1)]

    def fields(group: str, display_pool: list[str]) -> dict[str, Any]:
        return {"model_name": draw(st.sampled_from(["m-a", "m-b"])),
                "base_url": draw(st.sampled_from(["https://a.example/v1", "https://b.example/v1"])),
                "display_name": draw(st.sampled_from(display_pool)),
                "is_uncensored": draw(st.booleans())}

    models, held = [], set()
    for g in live_groups:
        spec = {"model_group_name": g, "api_key": "sk-old-live-key",
                **fields(g, [d for d in displays if d.startswith(g + " ")])}
        held.add(spec["display_name"])
        models.append(spec)
    live_chars = draw(st.lists(st.sampled_from(CHARS), unique=True, min_size=1))
    characters = [{"character_id": c, "character_name": f"Char {c}",
                   "model_group_name": draw(st.sampled_from(live_groups + BUILTINS + [GONE])),
                   "temperature": draw(st.sampled_from([0.1, 0.5, 0.9]))} for c in live_chars]
    wanted = draw(st.lists(st.sampled_from(GROUPS), unique=True))
    m_models, declared_displays = [], set()
    for g in wanted:
        # any model's display names, so swaps and takeovers of held names come up
        spec = {"model_group_name": g, "api_key": f"${{KEY_{g.upper()}}}", **fields(g, displays)}
        if dialect == "custom-llm" or draw(st.booleans()) or spec["display_name"] in declared_displays:
            del spec["display_name"]  # custom-llm cannot set it: a plan error
        else:
            declared_displays.add(spec["display_name"])
        if draw(st.integers(0, 3)) == 0:
            spec["protect"] = True
        if draw(st.booleans()):
            spec["api_key_version"] = draw(st.integers(1, 2))
        m_models.append(spec)
    unknown = ["c-unknown"] if draw(st.integers(0, 9)) == 0 else []
    declared = draw(st.lists(st.sampled_from(live_chars + unknown), unique=True))
    m_chars = []
    for c in declared:
        spec = {"char_id": c, "model_group_name": draw(st.sampled_from(wanted + BUILTINS))}
        temperature = draw(st.sampled_from([None, 0.0, 0.3, 1.0]))
        if temperature is not None:
            spec["temperature"] = temperature
        m_chars.append(spec)
    settings_: dict[str, Any] = {"prune": draw(st.booleans()),
                                 "api_dialect": draw(st.sampled_from(["auto", dialect]))}
    fallback = draw(st.sampled_from([None, "gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]))
    if fallback:
        settings_["fallback_model"] = fallback
    brakes_on = draw(st.integers(0, 4)) == 0
    if brakes_on:
        settings_["max_deregister"] = draw(st.integers(0, 2))
    versions = {g: draw(st.integers(1, 2)) for g in live_groups if draw(st.booleans())}
    for spec in m_models:  # often an earlier run applied the other version: a rotation is due
        name, version = spec["model_group_name"], spec.get("api_key_version")
        if version and name in live_groups and draw(st.booleans()):
            versions[name] = 3 - version
    parked = {c: draw(st.sampled_from(wanted + BUILTINS + [GONE]))
              for c in draw(st.lists(st.sampled_from(live_chars), unique=True, max_size=2))}
    return Scenario(dialect, {"models": models, "characters": characters},
                    {"version": 1, "settings": settings_, "models": m_models, "characters": m_chars},
                    versions, parked, Brakes() if brakes_on else Brakes(True, True))


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Emulator]]:
    saved = {k: os.environ.get(k) for k in CANARY}
    os.environ.update(CANARY)  # the engine resolves ${VAR} from the environment
    emus = {d: Emulator(dialect=d, account_key=ACCOUNT_KEY) for d in ("llm-models", "custom-llm")}
    for emu in emus.values():
        emu.start()
    yield emus
    for emu in emus.values():
        emu.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


@dataclass
class Run:
    emu: Emulator
    loaded: LoadedManifest
    state: SyncState
    options: Options
    outputs: list[str] = field(default_factory=list)  # everything the tool printed or wrote


def prepare(emus: dict[str, Emulator], sc: Scenario, sw: Switches, faults: Faults,
            workdir: Path) -> Run:
    emu = emus[sc.dialect]
    emu.faults = Faults()
    emu.configure(quirks=sw.quirks, character_list_config=not sw.lean_list,
                  character_get_config=not sw.lean_get)
    emu.load_seed(sc.seed)
    emu.clear_log()
    emu.faults = Faults(faults.rate, faults.after_commit, faults.seed, sw.latency_ms,
                        max_inflight=sw.max_inflight)
    text = yaml.safe_dump(sc.manifest, sort_keys=False)
    loaded = parse_manifest(text, "generated.yaml")
    path = workdir / "models.state.json"
    path.unlink(missing_ok=True)
    state = SyncState(path, emu.url, dict(sc.versions), dict(sc.parked))
    return Run(emu, loaded, state, Options(brakes=sc.brakes, parallelism=8))


def plan_once(run: Run, client: ConvaiClient) -> Plan:
    plan = make_plan(run.loaded, client, run.options, run.state)
    live = client.read_state(run.loaded.desired.variant)
    run.outputs += [render_plan(plan), json.dumps(plan.to_json()), render_plan_markdown(plan),
                    json.dumps(saved_document(plan, run.loaded, live, client.base_url))]
    return plan


def apply_once(run: Run, client: ConvaiClient) -> tuple[Plan, bool]:
    plan = plan_once(run, client)
    report = apply_plan(plan, client, resolve_secrets(run.loaded).keys, run.state, run.options)
    run.outputs += [render_report(report), json.dumps(report.to_json())]
    if run.state.path is not None and run.state.path.exists():
        run.outputs.append(run.state.path.read_text())
    assert report.ok, render_report(report)
    return plan, report.ok


def assert_state_matches(emu: Emulator, loaded: LoadedManifest, plan: Plan) -> None:
    """Checked against the emulator's own state, not through our planner."""
    models, chars = emu.models(), emu.characters()
    for spec in loaded.manifest.models:
        live = models[spec.model_group_name]
        assert (live["model_name"], live["base_url"]) == (spec.model_name, spec.base_url)
        if emu.dialect == "llm-models":
            assert live["is_uncensored"] == spec.is_uncensored
            if spec.display_name is not None:
                assert live["display_name"] == spec.display_name
    for change in plan.changes:  # every key the plan sends (register, replace, rotation) arrived
        if change.is_model and change.sends_key:
            assert models[change.id]["api_key"] == CANARY[f"KEY_{change.id.upper()}"]
    if loaded.manifest.settings.prune:
        assert set(models) == {m.model_group_name for m in loaded.manifest.models}
    for spec in loaded.manifest.characters:
        assert chars[spec.char_id]["model_group_name"] == spec.model_group_name
        if spec.temperature is not None:
            assert chars[spec.char_id]["temperature"] == pytest.approx(spec.temperature)
    known = set(models) | set(BUILTINS)
    stranded_before = {cid for cid, c in chars.items() if c["model_group_name"] == GONE}
    assert all(c["model_group_name"] in known for cid, c in chars.items()
               if cid not in stranded_before)  # only a character already on a missing model may be


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        for value in CANARY.values():
            assert value not in text
        assert ACCOUNT_KEY not in text


def refused_safely(err: PlanError, run: Run) -> None:
    """A refusal names one of the known reasons and writes nothing."""
    reasons = [reason for reason in REFUSALS if reason in str(err)]
    assert reasons, str(err)
    event(f"refused: {reasons[0]}")  # pytest --hypothesis-show-statistics shows the mix
    assert run.emu.writes() == []
    assert_no_canary(str(err), *run.outputs)


def converges_in_one_apply(run: Run, sw: Switches) -> None:
    with ConvaiClient(run.emu.url, ACCOUNT_KEY, retry=FAST) as client:
        try:
            plan, _ = apply_once(run, client)
        except PlanError as err:
            return refused_safely(err, run)
        run.emu.faults = Faults()
        time.sleep(sw.quirks.read_lag)  # let reads catch up with the last write
        assert plan_once(run, client).empty, "\n".join(run.outputs)
    event(f"converged: {len(plan.changes)} changes" if plan.changes else "converged: nothing to do")
    if any(c.is_model and c.action.value == "update" and c.sends_key for c in plan.changes):
        event("converged: with a key rotation")
    assert run.emu.orphan_events == []
    assert_state_matches(run.emu, run.loaded, plan)
    assert_no_canary(*run.outputs)


@pytest.mark.long
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sc=scenarios(), sw=switches())
def test_apply_converges_in_one_apply_and_never_orphans_50_examples(
        emulators: dict[str, Emulator], workdir: Path, sc: Scenario, sw: Switches) -> None:
    converges_in_one_apply(prepare(emulators, sc, sw, Faults(), workdir), sw)


@pytest.mark.long
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sc=scenarios(), sw=switches(), fault_seed=st.integers(0, 2**16),
       after_commit=st.sampled_from([0.0, 0.3]))
def test_converges_in_one_apply_under_30pct_faults_and_lost_replies_40_examples(
        emulators: dict[str, Emulator], workdir: Path, sc: Scenario, sw: Switches,
        fault_seed: int, after_commit: float) -> None:
    faults = Faults(rate=0.3, after_commit=after_commit, seed=fault_seed)
    converges_in_one_apply(prepare(emulators, sc, sw, faults, workdir), sw)
