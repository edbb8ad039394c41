"""The executor on its own, behind the engine's Client interface (a recording
client: the HTTP side is covered against the emulators elsewhere). Phase order,
concurrency inside a phase, the stop after a failed phase, keys, scrubbing,
interrupts and the report."""
from __future__ import annotations

import signal
import threading
import time
from typing import Sequence

import pytest

from convai_sync.errors import ConvaiSyncError
from convai_sync.executor import DONE, FAILED, NOT_ATTEMPTED, ApplyReport, Outcome, execute
from convai_sync.plan import Change, Phase, Plan
from convai_sync.secrets import Secret


class Recorder:
    """The Client interface, recording each write; `fail` maps an id to the error to raise."""

    def __init__(self, fail: dict[str, BaseException] | None = None, delay: float = 0.0):
        self.calls: list[tuple[str, str, object]] = []
        self.fail = fail or {}
        self.delay = delay
        self.inflight = self.peak = 0
        self._lock = threading.Lock()

    def _write(self, op: str, change: Change, keys: object = None) -> None:
        with self._lock:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            self.calls.append((op, change.id, keys))
        try:
            time.sleep(self.delay)
            if change.id in self.fail:
                raise self.fail[change.id]
        finally:
            with self._lock:
                self.inflight -= 1

    def register(self, change: Change, secrets: Sequence[Secret]) -> None:
        self._write("register", change, tuple(secrets))

    def update(self, change: Change, secrets: Sequence[Secret] | None) -> None:
        self._write("update", change, None if secrets is None else tuple(secrets))

    def replace(self, change: Change, secrets: Sequence[Secret]) -> None:
        self._write("replace", change, tuple(secrets))

    def deregister(self, change: Change) -> None:
        self._write("deregister", change)

    def bind(self, change: Change) -> None:
        self._write("bind", change)


KEY = Secret("sk-executor-test-key-1", "K1")


def model(name: str, action: str, phase: Phase, sends_key: bool = False) -> Change:
    return Change("model", name, action, phase, None, {"model_name": "m"}, ("model_name",),
                  sends_key=sends_key)


def char(cid: str, phase: Phase = Phase.REBIND) -> Change:
    return Change("character", cid, "update", phase, {"model_group_name": "a"},
                  {"model_group_name": "b"}, ("model_group_name",))


def plan(*changes: Change) -> Plan:
    return Plan("llm-models", list(changes))


def test_every_kind_of_change_reaches_its_client_call_with_the_right_keys() -> None:
    client = Recorder()
    p = plan(model("r", "register", Phase.REGISTER, True), model("u", "update", Phase.UPDATE),
             model("k", "update", Phase.UPDATE, True), char("c1"),
             model("x", "replace", Phase.REPLACE, True), model("d", "deregister", Phase.DEREGISTER))
    keys = {"r": KEY, "k": (KEY,), "x": [KEY]}
    report = execute(p, client, keys)
    assert report.ok and report.count(DONE) == 6
    assert sorted(client.calls) == sorted([
        ("register", "r", (KEY,)), ("update", "u", None), ("update", "k", (KEY,)),
        ("bind", "c1", None), ("replace", "x", (KEY,)), ("deregister", "d", None)])


def test_phases_run_in_order_and_writes_inside_a_phase_concurrently() -> None:
    client = Recorder(delay=0.05)
    p = plan(*(char(f"c{i}") for i in range(6)), model("d", "deregister", Phase.DEREGISTER),
             model("r", "register", Phase.REGISTER, True))
    report = execute(p, client, {"r": KEY}, parallelism=4)
    assert report.ok
    assert [c[1] for c in client.calls][0] == "r" and client.calls[-1][1] == "d"
    assert client.peak == 4  # bounded by parallelism, and really concurrent


def test_parallelism_below_one_still_runs_one_at_a_time() -> None:
    client = Recorder(delay=0.01)
    assert execute(plan(char("c1"), char("c2")), client, {}, parallelism=0).ok
    assert client.peak == 1


def test_a_failed_phase_finishes_its_own_writes_and_stops_every_later_phase() -> None:
    client = Recorder(fail={"c1": ConvaiSyncError("boom")})
    p = plan(char("c1"), char("c2"), model("d", "deregister", Phase.DEREGISTER))
    report = execute(p, client, {})
    assert [o.status for o in report.outcomes] == [FAILED, DONE, NOT_ATTEMPTED]
    assert [c[1] for c in client.calls if c[0] == "deregister"] == []
    assert not report.ok and report.outcomes[0].error == "boom"
    assert report.to_json() == {
        "ok": False, "interrupted": False, "done": 1, "failed": 1, "not_attempted": 1,
        "changes": [
            {"resource": "character", "id": "c1", "action": "update", "phase": "rebind",
             "status": "failed", "error": "boom"},
            {"resource": "character", "id": "c2", "action": "update", "phase": "rebind",
             "status": "done", "error": None},
            {"resource": "model", "id": "d", "action": "deregister", "phase": "deregister",
             "status": "not attempted", "error": None}]}


def test_a_missing_key_fails_that_change_before_anything_is_sent() -> None:
    client = Recorder()
    report = execute(plan(model("r", "register", Phase.REGISTER, True)), client, {})
    assert report.outcomes[0].error == "model 'r': its api_key variable is not set"
    assert client.calls == []


def test_errors_are_scrubbed_and_a_bug_is_reported_not_raised() -> None:
    secret = Secret("sk-quoted-back-9911", "Q")
    client = Recorder(fail={"c1": ConvaiSyncError(f"refused {secret.reveal()}"),
                            "c2": ValueError(f"odd {secret.reveal()}")})
    report = execute(plan(char("c1"), char("c2")), client, {})
    assert [o.error for o in report.outcomes] == ["refused (sensitive)",
                                                  "unexpected ValueError: odd (sensitive)"]


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def phase(self, phase: Phase, changes: list[Change]) -> None:
        self.seen.append(f"phase {phase.name} {len(changes)}")

    def finished(self, outcome: Outcome) -> None:
        self.seen.append(f"finished {outcome.change.id} {outcome.status}")

    def done(self) -> None:
        self.seen.append("done")


def test_progress_hears_every_phase_and_outcome_then_done() -> None:
    events = Events()
    execute(plan(model("r", "register", Phase.REGISTER, True), char("c1")), Recorder(), {"r": KEY},
            progress=events)
    assert events.seen == ["phase REGISTER 1", "finished r done", "phase REBIND 1",
                           "finished c1 done", "done"]


def test_an_interrupt_finishes_writes_in_flight_and_starts_nothing_more() -> None:
    events = Events()
    client = Recorder(fail={"c1": KeyboardInterrupt()})
    report = execute(plan(char("c1"), model("d", "deregister", Phase.DEREGISTER)), client, {},
                     progress=events)
    assert report.interrupted and events.seen[-1] == "done"
    assert [c[0] for c in client.calls] == ["bind"]
    assert report.outcomes[1].status == NOT_ATTEMPTED


def test_report_counts_and_consumer_noun() -> None:
    report = ApplyReport([Outcome(char("p1"), DONE), Outcome(char("p2"))], noun="pipeline")
    assert (report.count(DONE), report.count(NOT_ATTEMPTED), report.ok) == (1, 1, False)
    assert report.to_json()["changes"][0]["resource"] == "pipeline"
    assert ApplyReport().ok and ApplyReport().to_json()["interrupted"] is False


@pytest.mark.parametrize("action,phase", [("register", Phase.REGISTER), ("replace", Phase.REPLACE)])
def test_a_list_of_keys_goes_through_whole(action: str, phase: Phase) -> None:
    client = Recorder()
    two = (KEY, Secret("sk-executor-test-key-2", "K2"))
    execute(plan(model("m", action, phase, True)), client, {"m": two})
    assert client.calls == [(action, "m", two)]


class InterruptingRecorder(Recorder):
    """Ctrl-C arrives (in the main thread, as a signal would) while c1 is being written."""

    def _write(self, op: str, change: Change, keys: object = None) -> None:
        if change.id == "c1":  # 50 ms in, a real SIGINT to the main thread, waiting for the phase
            main = threading.main_thread().ident
            threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGINT)).start()
        super()._write(op, change, keys)


def test_ctrl_c_lets_the_writes_in_flight_finish_and_cancels_the_queued_ones() -> None:
    # Python's own Ctrl-C handler, whatever the runner installed (mutmut has its own)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        client = InterruptingRecorder(delay=0.2)
        report = execute(plan(char("c1"), char("c2"), char("c3"), char("c4")), client, {},
                         parallelism=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert report.interrupted
    statuses = {o.change.id: o.status for o in report.outcomes}
    assert statuses == {"c1": DONE, "c2": DONE, "c3": NOT_ATTEMPTED, "c4": NOT_ATTEMPTED}
    assert sorted(c[1] for c in client.calls) == ["c1", "c2"]


def test_defaults_eight_at_a_time_and_the_plans_noun() -> None:
    client = Recorder(delay=0.05)
    p = Plan("llm-models", [char(f"c{i}") for i in range(10)], noun="pipeline")
    report = execute(p, client, {})
    assert client.peak == 8
    assert report.noun == "pipeline" and report.to_json()["changes"][0]["resource"] == "pipeline"
    assert Outcome(char("c1")).to_json()["resource"] == "character"
