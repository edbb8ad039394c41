"""The Convai emulator: account state and the Convai routes on the shared
emulator base (lifecycle, faults, request log, orphan recording)."""
from __future__ import annotations

import hmac
import time
from collections.abc import Iterable

from convai_sync.providers.convai.emulator import endpoints
from convai_sync.emulator.base import AppEmulator, OrphanCheck, Reply, Request
from convai_sync.emulator.faults import FAULT_MESSAGES, Faults, retry_after_header
from convai_sync.providers.convai.emulator.orphans import OrphanWatch
from convai_sync.providers.convai.emulator.quirks import Quirks, emulator_builtins
from convai_sync.providers.convai.emulator.seed import DIALECTS, normalize_seed
from convai_sync.providers.convai.emulator.state import AccountState
from convai_sync.errors import ConvaiSyncError

ADD_CHARACTERS = "/_emulator/characters"  # the emulator's own route: see _add_characters

# what Quirks.errors_in_200 disguises: an endpoint's refusals, never 401/429/5xx nor
# the 404 of a path that does not exist (the dialect probe relies on that one)
_REFUSALS = (400, 404, 409)


class Emulator(AppEmulator):
    thread_name = "convai-emulator"

    def __init__(self, dialect: str = "llm-models", account_key: str = "emulator-key",
                 seed: dict | None = None, faults: Faults | None = None,
                 extra_builtins: Iterable[str] = (), character_list_config: bool = True,
                 character_get_config: bool = True, quirks: Quirks | None = None):
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
        super().__init__(faults)
        self.dialect = dialect
        self.account_key = account_key
        self.quirks = quirks or Quirks()
        self._builtins = {**emulator_builtins(), **{code: code for code in extra_builtins}}
        self._state = AccountState(self._builtins)
        self.configure(quirks=self.quirks, character_list_config=character_list_config,
                       character_get_config=character_get_config)
        # (when, state) after each write, for lagging reads; the first is what reads show
        self._history: list[tuple[float, AccountState]] = [(float("-inf"), self._state.frozen())]
        if seed is not None:
            self.load_seed(seed)

    def configure(self, *, quirks: Quirks | None = None, character_list_config: bool | None = None,
                  character_get_config: bool | None = None) -> None:
        """Change how the API behaves between runs (the account is kept)."""
        with self._lock:
            if quirks is not None:
                self.quirks = quirks
                self._state.unnamed_display = quirks.default_display
            if character_list_config is not None:
                self._state.list_carries_config = character_list_config
            if character_get_config is not None:
                self._state.get_carries_config = character_get_config

    def load_seed(self, seed: dict) -> None:
        """Replace the account state (the request log is kept)."""
        seed = normalize_seed(seed, "seed", self._builtins)
        with self._lock:
            self._state.load(seed)
            self._history = [(float("-inf"), self._state.frozen())]

    def models(self) -> dict[str, dict]:
        with self._lock:
            return self._state.snapshot_models()

    def characters(self) -> dict[str, dict]:
        with self._lock:
            return self._state.snapshot_characters()

    # --- platform hooks ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        api_key = request.headers.get("CONVAI-API-KEY")
        key_ok = api_key is not None and hmac.compare_digest(
            api_key.encode("utf-8", "replace"), self.account_key.encode("utf-8"))
        route = endpoints.route(self.dialect, request.path)
        if request.path == ADD_CHARACTERS:
            reply = self._add_characters(request, key_ok)
        else:
            lagging = self.quirks.read_lag > 0 and route is not None and not route.writes
            state = self._visible(time.monotonic()) if lagging else self._state
            reply = endpoints.handle(state, route, request.path, request.method, key_ok,
                                     request.body, request.body_error)
        if reply.committed and self.quirks.read_lag > 0:  # shown to reads read_lag from now
            self._history.append((time.monotonic(), self._state.frozen()))
        if self.quirks.errors_in_200 and route is not None and reply.status in _REFUSALS:
            reply = Reply(200, reply.body, reply.committed, reply.headers)
        return reply

    def _visible(self, now: float) -> AccountState:
        """The state as of read_lag seconds ago: writes since then are not shown yet."""
        cutoff = now - self.quirks.read_lag
        while len(self._history) > 1 and self._history[1][0] <= cutoff:
            self._history.pop(0)
        return self._history[0][1]

    def _add_characters(self, request: Request, key_ok: bool) -> Reply:
        """The emulator's own route (not Convai's): characters are made in
        Convai's UI, which has no API, so this stands in for it. Body: the seed
        format's {"characters": [...]}; the same account key."""
        if not key_ok:
            return endpoints.error(endpoints.CHARACTER, 401, "")
        if request.method != "POST" or request.body_error or set(request.body or {}) != {"characters"}:
            return Reply(400, {"ERROR": 'POST a JSON object {"characters": [{character_id, '
                                        'character_name, model_group_name, temperature}, ...]}'})
        try:
            added = normalize_seed({"characters": request.body["characters"]}, "body",
                                   self._builtins)["characters"]
        except ConvaiSyncError as exc:
            return Reply(400, {"ERROR": str(exc)})
        self._state.add_characters(added)  # the base holds the lock around handle()
        return Reply(200, {"added": [c["character_id"] for c in added]}, committed=True)

    def watch(self, request: Request) -> OrphanCheck | None:
        route = endpoints.route(self.dialect, request.path)
        if route is None or not route.writes:
            return None
        return OrphanWatch(self._state, request.body).new_orphans

    def fault_reply(self, request: Request, status: int) -> Reply:
        route = endpoints.route(self.dialect, request.path)
        reply = endpoints.error(route.family if route else endpoints.MODEL, status,
                                FAULT_MESSAGES[status])
        if status == 429 and self.quirks.retry_after:
            reply.headers["Retry-After"] = retry_after_header(self._faults.retry_after)
        return reply
