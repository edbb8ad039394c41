"""Reading whole Vapi lists (providers/vapi/reads.py) through the Vapi client,
over real HTTP against the Vapi emulator: the bare lists, the refusal of a
credential list that may be cut, and the paged read of assistants
(/v2/assistant) when the bare list may be cut. Vapi cuts lists at 1000; most
tests here cut them at 3 (reads.LIMIT) so they stay small and fast, and one
checks the real limit."""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest

from convai_sync.errors import ApiError
from convai_sync.providers.vapi import reads
from convai_sync.providers.vapi.client import VapiClient
from convai_sync.providers.vapi.emulator import VapiEmulator
from convai_sync.retry import RetryPolicy

KEY = "vapi-reads-test-key-3317"
FAST = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.005, max_total=2.0)
CUSTOM = {"provider": "custom-llm", "url": "https://gw.example.test/v1", "model": "m"}
PAGED = "GET /v2/assistant (assistant list) failed: HTTP"


def account(assistants: int, credentials: int = 1) -> dict:
    return {"credentials": [{"name": f"c{i}", "apiKey": "k"} for i in range(credentials)],
            "assistants": [assistant(i) for i in range(assistants)]}


def assistant(i: int, name: str | None = None) -> dict:
    return {"id": f"00000000-0000-4000-8000-{i:012d}", "createdAt": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
            "name": name or f"a{i}", "credentialIds": ["c0"], "model": dict(CUSTOM)}


class Shifting(VapiEmulator):
    """Before answering page 2 of /v2/assistant, runs `on_page_2` (a change to the
    account made while the pages are read); counts the pages served at once."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.on_page_2: Callable[[], None] | None = None
        self.gate = threading.Condition()
        self.inflight = self.peak = 0
        self.target = 0  # hold each page until this many are in flight (or 0.06 s pass)

    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> Any:
        if target.startswith("/v2/assistant?") and "page=2&" in target + "&" and self.on_page_2:
            self.on_page_2()  # outside the emulator's lock, which load_seed takes
        if not target.startswith("/v2/assistant") or not self.target:
            return super().serve(method, target, headers, raw)
        with self.gate:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            self.gate.notify_all()
            self.gate.wait_for(lambda: self.peak >= self.target, timeout=self.wait)
        try:
            return super().serve(method, target, headers, raw)
        finally:
            with self.gate:
                self.inflight -= 1

    wait = 0.06


@pytest.fixture
def start(serve: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Callable[..., tuple[Shifting, VapiClient]]]:
    monkeypatch.setattr(reads, "LIMIT", 3)
    clients: list[VapiClient] = []

    def make(seed: dict, parallelism: int = 4) -> tuple[Shifting, VapiClient]:
        emu = serve(Shifting(api_key=KEY, seed=seed))
        client = VapiClient(emu.url, KEY, parallelism=parallelism, retry=FAST)
        clients.append(client)
        return emu, client

    yield make
    for c in clients:
        c.close()


def fail(fn: Callable[[], Any]) -> str:
    with pytest.raises(ApiError) as e:
        fn()
    return str(e.value)


@pytest.mark.parametrize("n,requests", [(0, 2), (2, 2), (3, 3), (6, 4), (7, 5)])
def test_assistants_are_paged_only_when_the_bare_list_may_be_cut(start: Callable, n: int,
                                                                 requests: int) -> None:
    emu, client = start(account(n))
    live = client.read_state("vapi")
    assert live.requests == requests
    assert sorted(c.name for c in live.consumers.values()) == sorted(f"a{i}" for i in range(n))
    asked = [r for r in emu.requests if r.path.endswith("/assistant")]
    assert len(asked) == requests - 1


def test_the_bare_lists_ask_for_the_most_vapi_returns(serve: Callable[[Any], Any]) -> None:
    emu = serve(VapiEmulator(api_key=KEY, seed=account(150), list_default_limit=100))
    with VapiClient(emu.url, KEY, retry=FAST) as client:
        live = client.read_state("vapi")
    assert len(live.consumers) == 150 and live.requests == 2  # limit=1000 was asked for


def test_a_credential_list_that_may_be_cut_is_refused(start: Callable) -> None:
    emu, client = start(account(0, credentials=3))
    assert fail(client.ping) == (
        "GET /credential (credential list) failed: HTTP 200: the list holds 3 credentials, the "
        "most Vapi returns in one request, and Vapi cannot page credentials, so some may be "
        "missing\n  nothing was written: a plan on a cut list could delete or duplicate "
        "credentials. Delete credentials nobody uses (in the Vapi dashboard) until fewer than 3 "
        "remain, then run again")
    emu.load_seed(account(0, credentials=2))
    assert client.ping() == "2 custom-llm credential(s)"


@pytest.mark.parametrize("path,what", [("/credential", "credential list"), ("/assistant", "assistant list")])
def test_a_bare_list_that_is_not_a_list_is_refused(start: Callable, path: str, what: str) -> None:
    emu, client = start(account(1))
    emu.override(path, {"items": []})
    assert fail(lambda: client.read_state("vapi")) == (
        f"GET {path} ({what}) failed: HTTP 200: unexpected reply shape (not a list)\n"
        "  the API may have changed; nothing was written. Please report this")
    emu.override(path, [{"name": "no id"}])
    assert fail(lambda: client.read_state("vapi")) == (
        f"GET {path} ({what}) failed: HTTP 200: item 0 has no id string (got None)\n"
        "  nothing was written: a plan on a misread account could deregister a model in use")
    emu.override(path, [{"id": "x", "name": 5}])
    assert fail(lambda: client.read_state("vapi")).startswith(
        f"GET {path} ({what}) failed: HTTP 200: item 0 ('x') has a name that is not text (int)")


def test_an_assistant_created_while_the_pages_are_read_is_refused(start: Callable) -> None:
    emu, client = start(account(7), parallelism=1)  # pages 2 and 3 one after the other
    emu.on_page_2 = lambda: emu.load_seed(account(8))
    assert fail(lambda: client.read_state("vapi")) == (
        f"{PAGED} 200: the list changed while its 3 pages were read (7 assistants at first, 7 "
        "read)\n  someone is creating or deleting assistants right now; nothing was written. Run "
        "again in a moment")


def test_a_list_shifted_under_the_pages_is_refused(start: Callable) -> None:
    seed = account(7)
    emu, client = start(seed, parallelism=1)

    def swap() -> None:  # the oldest deleted, one created: the same total, later pages shifted by one
        seed["assistants"] = seed["assistants"][1:] + [assistant(9, "new")]
        emu.load_seed(seed)
        emu.on_page_2 = None

    emu.on_page_2 = swap
    assert fail(lambda: client.read_state("vapi")).startswith(
        f"{PAGED} 200: the list changed while its 3 pages were read (7 assistants at first, 6 read)")


def test_a_paged_list_that_is_not_available_says_so(start: Callable) -> None:
    emu, client = start(account(3))
    emu.override("/v2/assistant", {"message": "Cannot GET /v2/assistant", "error": "Not Found"},
                 status=404)
    assert fail(lambda: client.read_state("vapi")) == (
        f"{PAGED} 404: Cannot GET /v2/assistant\n  GET /assistant returned 3 assistants, the most "
        "one request returns, and the paged list is not available here, so some may be missing; "
        "nothing was written. Please report this")
    emu.override("/v2/assistant", {"message": "slow down", "error": "Too Many Requests"}, status=429)
    assert fail(lambda: client.read_state("vapi")).startswith(f"{PAGED} 429: slow down (gave up")
    emu.override("/v2/assistant", {"message": "bad page", "error": "Bad Request"}, status=400)
    assert fail(lambda: client.read_state("vapi")) == f"{PAGED} 400: bad page"


@pytest.mark.parametrize("reply", [
    [], {"metadata": {"totalItems": 3}}, {"results": {}, "metadata": {"totalItems": 3}},
    {"results": []}, {"results": [], "metadata": []}, {"results": [], "metadata": {"totalItems": "3"}},
    {"results": [], "metadata": {"totalItems": True}}])
def test_a_page_without_its_results_or_total_is_refused(start: Callable, reply: Any) -> None:
    emu, client = start(account(3))
    emu.override("/v2/assistant", reply)
    assert fail(lambda: client.read_state("vapi")) == (
        f"{PAGED} 200: unexpected reply shape (no results list or metadata.totalItems)\n"
        "  the API may have changed; nothing was written. Please report this")


def test_a_page_with_a_malformed_item_is_refused(start: Callable) -> None:
    emu, client = start(account(3))
    emu.override("/v2/assistant", {"results": [{"name": "no id"}], "metadata": {"totalItems": 1}})
    assert fail(lambda: client.read_state("vapi")).startswith(
        f"{PAGED} 200: item 0 has no id string (got None)")
    emu.override("/v2/assistant", {"results": [{"id": "x", "name": 5}], "metadata": {"totalItems": 1}})
    assert fail(lambda: client.read_state("vapi")).startswith(
        f"{PAGED} 200: item 0 ('x') has a name that is not text (int)")


@pytest.mark.parametrize("n,parallelism,peak", [(12, 2, 2), (12, 8, 3), (9, 8, 2)])
def test_the_later_pages_are_read_together_up_to_the_parallelism(start: Callable, n: int,
                                                                 parallelism: int, peak: int) -> None:
    emu, client = start(account(n), parallelism=parallelism)
    emu.target = peak + 1  # never reached: each page waits the short while, then goes
    live = client.read_state("vapi")
    assert len(live.consumers) == n and emu.peak == peak


def test_up_to_ten_later_pages_are_read_at_once_with_a_parallelism_of_ten(start: Callable) -> None:
    emu, client = start(account(33), parallelism=10)  # 11 pages: the first, then 10 at once
    emu.target = 10
    live = client.read_state("vapi")
    assert len(live.consumers) == 33 and emu.peak == 10
