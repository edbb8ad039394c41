"""The Vapi API: custom-llm credentials (the models) and the assistants that pin
them (the consumers), on the shared HTTP session (retries, adaptive
concurrency, lost-reply checks). See /work/shared/VAPI_API.md.

Plans name credentials by name; this client maps names to Vapi's ids, which it
keeps for the run (and in the state file's memo, to notice a credential that
was deleted and created again behind convai-sync's back)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, Sequence

from ...errors import ApiError, ConvaiSyncError
from ...model import ConsumerState, LiveState, ModelState
from ...plan import Change
from ...retry import RetryPolicy
from ...secrets import Secret
from ..base import Capabilities, Desired
from ..http import Api, SessionClient
from . import reads
from .assistants import (CUSTOM_LLM, Credentials, bound_model, bound_model_object, consumer_state,
                         is_custom, label, matches, new_pins, pinned_models, pins)
from .baseline import drift_warnings, unmanaged_content

DEFAULT_URL = "https://api.vapi.ai"


def _message(payload: Any) -> str | None:
    """Vapi's NestJS errors: `message` is a list (one line per problem) or a
    string; `error` is the HTTP phrase, or a code such as assistant_pinned."""
    if not isinstance(payload, dict):
        return None
    message, error = payload.get("message"), payload.get("error")
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message) or None
    if not isinstance(message, str):
        message = error if isinstance(error, str) else None
    elif isinstance(error, str) and error not in _PHRASES and error not in message:
        message = f"{message} [{error}]"
    return message


_PHRASES = frozenset(s.phrase for s in HTTPStatus)

API = Api("Vapi", "VAPI_API_URL", "VAPI_API_KEY", DEFAULT_URL, _message, {
    401: "the account key was refused: set VAPI_API_KEY to your Vapi *private* API key "
         "(Dashboard > Organization > API Keys; the public key is for client SDKs)",
    404: "it no longer exists on Vapi (deleted since the plan was read?); run plan again",
    409: "assistant_pinned: a squad pins this assistant (or one of its versions); unpin it in "
         "the squad, then run apply again",
    429: "Vapi kept rate-limiting; wait a little and run again, or lower --parallelism",
})


class VapiClient(SessionClient):
    """One account. Thread-safe: the executor calls it from many threads."""

    def __init__(self, base_url: str, api_key: str, *, parallelism: int = 8,
                 retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0, **_: Any):
        super().__init__(API, base_url, {"Authorization": f"Bearer {api_key}"}, api_key,
                         parallelism=parallelism, retry=retry, timeout=timeout)
        self.parallelism = parallelism
        self._lock = threading.Lock()
        self._creds = Credentials()
        self._ids: dict[str, str] = {}                    # model name -> credential id
        self._assistants: dict[str, dict[str, Any]] = {}  # id -> as last read or written
        self._managed: set[str] = set()                   # assistants the baseline covers

    def capabilities(self) -> Capabilities:
        from . import capabilities
        return capabilities("vapi")

    # -- reading ---------------------------------------------------------------

    def ping(self, variant: str = "vapi") -> str:
        custom = [c for c in reads.credentials(self.http) if c.get("provider") == CUSTOM_LLM]
        return f"{len(custom)} custom-llm credential(s)"

    def read_state(self, variant: str = "vapi", desired: Desired | None = None,
                   memo: dict[str, Any] | None = None) -> LiveState:
        """Both lists at once: 2 requests (3 when 1,000 assistants need paging)."""
        start = self.requests
        with ThreadPoolExecutor(max_workers=2) as pool:
            creds = pool.submit(reads.credentials, self.http)
            assistants = pool.submit(reads.assistants, self.http, self.parallelism)
            raw_creds, raw_assistants = creds.result(), assistants.result()
        memo = memo or {}
        warnings: list[str] = []
        models = self._read_credentials(raw_creds, memo.get("ids") or {}, warnings)
        consumers = self._read_assistants(raw_assistants, desired, warnings)
        self._compare_baselines(desired, memo.get("baselines") or {}, warnings)
        live = LiveState("vapi", models, consumers, platform="vapi", warnings=warnings)
        live.requests = self.requests - start
        return live

    def _read_credentials(self, raw: list[dict[str, Any]], remembered: dict[str, str],
                          warnings: list[str]) -> dict[str, ModelState]:
        creds, ids = Credentials(), {}
        for c in raw:
            cid = c["id"].lower()
            if c.get("provider") != CUSTOM_LLM:
                creds.others.add(cid)
                continue
            name = c.get("name") if isinstance(c.get("name"), str) and c.get("name") else cid
            if name == cid:
                warnings.append(f"custom-llm credential {cid} has no name; it is named by its id")
            if name in ids:
                raise ApiError("GET /credential", f"credential '{name}'", 200,
                               f"two custom-llm credentials are named '{name}' ({ids[name]} and "
                               f"{cid}); Vapi allows that, but convai-sync knows credentials by name",
                               "nothing was written. Rename or delete one of them in the Vapi "
                               "dashboard, then run again")
            ids[name], creds.names[cid] = cid, name
            old = remembered.get(name)
            if old and old != cid:
                warnings.append(f"credential '{name}' has a new id ({old} -> {cid}): it was "
                                "deleted and created again outside convai-sync, so its key may "
                                "not be the manifest's; bump api_key_version to send it again")
        with self._lock:
            self._creds, self._ids = creds, ids
        return {name: ModelState(name, {}) for name in ids}

    def _read_assistants(self, raw: list[dict[str, Any]], desired: Desired | None,
                         warnings: list[str]) -> dict[str, ConsumerState]:
        targets = {c.id: c.model for c in desired.consumers} if desired else {}
        keep = frozenset(m.name for m in desired.models) if desired else frozenset()
        consumers: dict[str, ConsumerState] = {}
        everyone: dict[str, dict[str, Any]] = {}
        others: dict[str, dict[str, Any]] = {}
        notes: dict[str, list[str]] = {}
        for a in raw:
            aid = a["id"] = a["id"].lower()
            everyone[aid] = a
            if not is_custom(a):
                others[aid] = a
                continue
            consumers[aid] = consumer_state(a, bound_model(a, self._creds, targets.get(aid), keep))
            if aid not in targets:  # a declared one gets exactly one pin from the plan
                self._note_binding(a, desired, notes)
        with self._lock:
            self._assistants = everyone
        warnings += [_grouped(what, labels) for what, labels in notes.items()]
        self._other_pins(others, desired, warnings)
        _refuse_other_providers(targets, others)
        return consumers

    def _note_binding(self, a: dict[str, Any], desired: Desired | None,
                      notes: dict[str, list[str]]) -> None:
        """What is unsafe or unmanaged about an undeclared assistant's binding."""
        named, _ = pinned_models(a, self._creds)
        if len(named) > 1:
            notes.setdefault(_SEVERAL, []).append(f"{label(a)} ({', '.join(named)})")
        elif not named and not pins(a):
            notes.setdefault(_UNPINNED, []).append(label(a))
        elif named and desired and named[0] in desired.implied:
            model = a.get("model") or {}
            if any(model.get(k) != v for k, v in desired.implied[named[0]].items()):
                notes.setdefault(_OFF_MANIFEST, []).append(f"{label(a)} on '{named[0]}'")

    def _other_pins(self, others: dict[str, dict[str, Any]], desired: Desired | None,
                    warnings: list[str]) -> None:
        """Assistants on another provider that pin a custom-llm credential: the
        plan never moves them, so a credential they pin must not be deleted."""
        doomed: list[str] = []
        for a in others.values():
            for name in pinned_models(a, self._creds)[0]:
                going = desired is not None and desired.prune and desired.model(name) is None
                (doomed if going else warnings).append(
                    f"assistant {label(a)} does not run a custom LLM but pins custom-llm "
                    f"credential '{name}'" + ("" if going else "; convai-sync leaves that pin alone"))
        if doomed:
            raise ConvaiSyncError("prune would delete credentials that assistants convai-sync does "
                                  "not manage still pin: " + "; ".join(doomed) + ". Remove those "
                                  "pins in the Vapi dashboard, or list the credentials in the "
                                  "manifest. Nothing was written")

    def _compare_baselines(self, desired: Desired | None, old: dict[str, Any],
                           warnings: list[str]) -> None:
        """Warn about drift outside the managed fields; keep what to compare with next time."""
        managed = {c.id for c in desired.consumers} if desired else set(old)
        for aid in sorted(managed):
            a = self._assistants.get(aid)
            if a is not None and aid in old and is_custom(a):
                warnings += drift_warnings(a, old[aid])
        with self._lock:
            self._managed = managed

    # -- the engine's Client interface ----------------------------------------------

    def register(self, change: Change, secrets: Sequence[Secret]) -> None:
        name = change.id
        body = {"provider": CUSTOM_LLM, "name": name, "apiKey": secrets[0].reveal()}
        reply = self.http.call("POST", "/credential", body, f"credential '{name}'",
                               landed=lambda: self._find_credential(name) is not None)
        cid = reply.get("id") if isinstance(reply, dict) else None
        self._remember_credential(name, cid if isinstance(cid, str) else self._find_credential(name))

    def update(self, change: Change, secrets: Sequence[Secret] | None) -> None:
        """Only a key rotation: a credential has nothing else to update."""
        if not secrets:
            return
        cid = self._id_of(change.id)
        # the key is write-only, so a lost reply cannot be checked: PATCH is idempotent
        self.http.call("PATCH", f"/credential/{cid}",
                       {"provider": CUSTOM_LLM, "apiKey": secrets[0].reveal()},
                       f"credential '{change.id}'")

    def replace(self, change: Change, secrets: Sequence[Secret]) -> None:
        raise ConvaiSyncError(f"credential '{change.id}': Vapi never needs a replace (everything "
                              "about a credential can be updated); this plan was not made for "
                              "Vapi. Run plan again")

    def deregister(self, change: Change) -> None:
        cid = self._id_of(change.id)
        self._refuse_if_pinned(change.id, cid)
        self.http.call("DELETE", f"/credential/{cid}", None, f"credential '{change.id}'",
                       landed=lambda: self._credential_gone(cid))
        with self._lock:
            self._creds.names.pop(cid, None)
            self._ids.pop(change.id, None)

    def bind(self, change: Change) -> None:
        aid, after = change.id, change.after or {}
        current = self._get_assistant(aid, change)
        if not is_custom(current):
            raise ConvaiSyncError(f"assistant {label(current)} no longer runs a custom LLM "
                                  f"(its provider is now {(current.get('model') or {}).get('provider')!r}); "
                                  "it changed since the plan: run plan again. Nothing was written")
        model = bound_model_object(current, after, change.fields)
        body: dict[str, Any] = {"model": model}
        credential_ids = None
        if "credential" in change.fields or len(pinned_models(current, self._creds)[0]) > 1:
            credential_ids = new_pins(current, self._id_of(after["credential"]), self._creds)
            body["credentialIds"] = credential_ids
        seen: list[dict[str, Any]] = []
        reply = self.http.call("PATCH", f"/assistant/{aid}", body, f"assistant {label(current)}",
                               landed=lambda: self._bound(aid, model, credential_ids, seen))
        self._remember_assistant(reply if isinstance(reply, dict) else seen[-1], aid)

    def finish(self) -> list[str]:
        return []

    def memo(self) -> dict[str, Any]:
        """Credential ids by name, and the unmanaged content of each managed
        assistant as it is now (secrets masked): next run's drift baseline."""
        with self._lock:
            baselines = {aid: unmanaged_content(self._assistants[aid]) for aid in sorted(self._managed)
                         if aid in self._assistants and is_custom(self._assistants[aid])}
            return {"ids": dict(sorted(self._ids.items())), "baselines": baselines}

    # -- helpers ---------------------------------------------------------------------

    def _id_of(self, name: str) -> str:
        with self._lock:
            cid = self._ids.get(name)
        if cid is None:
            raise ConvaiSyncError(f"credential '{name}' is not in the account as this run read "
                                  "it; run plan again. Nothing was written for it")
        return cid

    def _remember_credential(self, name: str, cid: str | None) -> None:
        if cid is None:
            raise ApiError("POST /credential", f"credential '{name}'", None,
                           "the credential was created but its id could not be read back",
                           "run plan again: it will show the credential as live")
        with self._lock:
            self._ids[name], self._creds.names[cid.lower()] = cid.lower(), name

    def _find_credential(self, name: str) -> str | None:
        for c in reads.credentials(self.http):
            if c.get("provider") == CUSTOM_LLM and c.get("name") == name:
                return c["id"].lower()
        return None

    def _credential_gone(self, cid: str) -> bool:
        try:
            self.http.call("GET", f"/credential/{cid}", None, "credential")
        except ApiError as e:
            if e.status == 404:
                return True
            raise
        return False

    def _refuse_if_pinned(self, name: str, cid: str) -> None:
        """The planner moves every assistant on a credential before deleting it;
        this is the last line: an assistant that still pins it (a second pin, or
        one on another provider) would be left pinning a missing credential."""
        with self._lock:
            holders = [label(a) for a in self._assistants.values() if cid in pins(a)]
        if holders:
            raise ConvaiSyncError(f"DELETE /credential/{cid} (credential '{name}') was not sent: "
                                  f"assistant(s) {', '.join(holders)} still pin it, and deleting it "
                                  "would leave them pinned to a missing credential. Remove the pin "
                                  "in the Vapi dashboard (or declare them in the manifest), then "
                                  "run apply again")

    def _get_assistant(self, aid: str, change: Change) -> dict[str, Any]:
        who = f"assistant '{change.name}' ({aid})" if change.name else f"assistant '{aid}'"
        got = self.http.call("GET", f"/assistant/{aid}", None, who)
        if not isinstance(got, dict) or not isinstance(got.get("id"), str):
            raise ApiError(f"GET /assistant/{aid}", who, 200, "unexpected reply shape",
                           "the API may have changed; please report this")
        got["id"] = got["id"].lower()
        return got

    def _bound(self, aid: str, model: dict[str, Any], credential_ids: list[str] | None,
               seen: list[dict[str, Any]]) -> bool:
        got = self.http.call("GET", f"/assistant/{aid}", None, f"assistant '{aid}'")
        seen.append(got)
        return isinstance(got, dict) and matches(got, model, credential_ids)

    def _remember_assistant(self, assistant: dict[str, Any], aid: str) -> None:
        """Keep the assistant as the PATCH of `aid` returned it, under that id
        (whatever id the reply names, if any): the next drift baseline."""
        assistant["id"] = aid.lower()
        with self._lock:
            self._assistants[assistant["id"]] = assistant


_SEVERAL = ("that pin several custom-llm credentials, so which one Vapi uses is undefined "
            "(declare them in the manifest to pin exactly one)")
_UNPINNED = ("that run a custom LLM but pin no credential, so Vapi picks one by an undocumented "
             "rule (declare them in the manifest to pin one)")
_OFF_MANIFEST = ("on a manifest credential with another url or model than the manifest's; they are "
                 "not in the manifest, so they are left as they are (declare them to manage them)")
SHOWN = 10  # assistants named per warning line


def _grouped(what: str, labels: list[str]) -> str:
    more = f" and {len(labels) - SHOWN} more" if len(labels) > SHOWN else ""
    return f"assistants {what}: {', '.join(labels[:SHOWN])}{more}"


def _refuse_other_providers(targets: dict[str, str], others: dict[str, dict[str, Any]]) -> None:
    """A declared assistant on another provider (OpenAI, ...) is not a custom-LLM
    consumer: say so plainly instead of 'does not exist'."""
    wrong = [f"{label(others[aid])} runs on provider "
             f"{(others[aid].get('model') or {}).get('provider')!r}" for aid in targets if aid in others]
    if wrong:
        raise ConvaiSyncError("these assistants are in the manifest but do not run a custom LLM: "
                              + "; ".join(wrong) + ". convai-sync manages only custom-llm "
                              "assistants: switch their model to Custom LLM in the Vapi dashboard, "
                              "or remove them from the manifest. Nothing was written")
