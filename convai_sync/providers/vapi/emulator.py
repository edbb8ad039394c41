"""A Vapi emulator: custom-LLM credentials and the assistants that pin them, on the
shared emulator base (lifecycle, latency, faults, request log, orphan recording).

    with VapiEmulator(seed=vapi_demo_seed()) as emu:
        ...  # point a client at emu.url with "Authorization: Bearer emulator-key"

Behaviour follows /work/shared/VAPI_API.md; where the contract says "unknown" the
choice made here is marked "guess". Deleting a credential that assistants pin is
allowed (the contract documents no 409) and recorded as orphan events: it is the
dangerous case a sync tool must avoid.
"""
from __future__ import annotations

import copy
import datetime as dt
import hmac
import math
import re
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from convai_sync.emulator.base import AppEmulator, OrphanCheck, Reply, Request
from convai_sync.emulator.faults import FAULT_MESSAGES, Faults, retry_after_header
from convai_sync.providers.vapi.emulator_seed import (SECRET_KEYS, UUID_RE, check_assistant,
                                                      check_credential_create,
                                                      check_credential_update, iso_ms,
                                                      normalize_vapi_seed, parse_time,
                                                      seed_id, vapi_demo_seed)

__all__ = ["VapiEmulator", "vapi_demo_seed"]

UNAUTHORIZED = {"message": "Invalid Key. Hot tip, you may be using the private key instead of "
                           "the public key, or vice versa.",
                "error": "Unauthorized", "statusCode": 401}
MAX_LIMIT = 1000
_DATE_FILTERS = tuple(f"{field}{op}" for field in ("createdAt", "updatedAt")
                      for op in ("Gt", "Lt", "Ge", "Le"))
_COMPARE: dict[str, Callable[[dt.datetime, dt.datetime], bool]] = {
    "Gt": lambda a, b: a > b, "Lt": lambda a, b: a < b,
    "Ge": lambda a, b: a >= b, "Le": lambda a, b: a <= b}
_ROUTES = (  # (path pattern, route name, methods)
    (re.compile(r"^/credential/?$"), "credentials", ("GET", "POST")),
    (re.compile(r"^/credential/([^/]+)/?$"), "credential", ("GET", "PATCH", "DELETE")),
    (re.compile(r"^/assistant/?$"), "assistants", ("GET", "POST")),
    (re.compile(r"^/assistant/([^/]+)/?$"), "assistant", ("GET", "PATCH", "PUT", "DELETE")),
    (re.compile(r"^/v2/assistant/?$"), "assistants_v2", ("GET",)),
)
_WRITES = ("POST", "PATCH", "PUT", "DELETE")
_SEED_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


class _Fail(Exception):
    """Ends a request early with an error reply."""

    def __init__(self, status: int, message: str | list[str]):
        super().__init__(message)
        self.reply = _error(status, message)


def _error(status: int, message: str | list[str]) -> Reply:
    return Reply(status, {"message": message, "error": HTTPStatus(status).phrase,
                          "statusCode": status})


def _scrub(value: Any) -> Any:
    """A copy without write-only secrets (apiKey, clientSecret), at any depth."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in SECRET_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return copy.deepcopy(value)


class VapiEmulator(AppEmulator):
    thread_name = "vapi-emulator"

    def __init__(self, api_key: str = "emulator-key", seed: dict | None = None,
                 faults: Faults | None = None, list_default_limit: int = 100):
        super().__init__(faults)
        self.api_key = api_key
        self.list_default_limit = list_default_limit
        self.org_id = seed_id("org", 0, api_key)
        self._credentials: dict[str, dict] = {}  # id -> stored record, apiKey included
        self._assistants: dict[str, dict] = {}
        self._last = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        if seed is not None:
            self.load_seed(seed)

    def load_seed(self, seed: dict) -> None:
        """Replace the account state (the request log is kept)."""
        seed = normalize_vapi_seed(seed)
        with self._lock:
            self._credentials = {c["id"]: self._seeded(c, i)
                                 for i, c in enumerate(seed["credentials"])}
            self._assistants = {a["id"]: self._seeded(a, i)
                                for i, a in enumerate(seed["assistants"])}

    def credentials(self) -> dict[str, dict]:
        """id -> credential as the API shows it, plus `secret_api_key` (the stored apiKey)."""
        with self._lock:
            return {cid: {**_scrub(c), "secret_api_key": c.get("apiKey")}
                    for cid, c in self._credentials.items()}

    def assistants(self) -> dict[str, dict]:
        with self._lock:
            return {aid: self._assistant_view(a) for aid, a in self._assistants.items()}

    # --- platform hooks ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        found = _route(request.method, request.path)
        if found is None:  # NestJS: unmatched routes 404 before any guard runs
            return _error(404, f"Cannot {request.method} {request.path}")
        name, ident = found
        if not self._authorized(request):
            return Reply(401, dict(UNAUTHORIZED))
        try:
            if ident is not None and not UUID_RE.match(ident):
                # NestJS ParseUUIDPipe's message (the contract only says "probably 400")
                raise _Fail(400, "Validation failed (uuid is expected)")
            if request.method in ("POST", "PATCH", "PUT") and request.body_error:
                raise _Fail(400, request.body_error)
            handler = getattr(self, f"_{name}_{request.method.lower()}")
            return handler(request) if ident is None else handler(request, ident.lower())
        except _Fail as fail:
            return fail.reply

    def fault_reply(self, request: Request, status: int) -> Reply:
        # 429 text: "Rate limit exceeded" (support thread, weak); Retry-After: unknown
        # whether Vapi sends one, so only when the test asks for it.
        reply = _error(status, "Rate limit exceeded" if status == 429 else FAULT_MESSAGES[status])
        if status == 429 and self._faults.retry_after > 0:
            reply.headers["Retry-After"] = retry_after_header(self._faults.retry_after)
        return reply

    def watch(self, request: Request) -> OrphanCheck | None:
        if request.method not in _WRITES:
            return None
        before = set(self._credentials)
        return lambda: self._new_orphans(before)

    def _new_orphans(self, before: set[str]) -> dict[str, str]:
        """assistant id -> pinned credential that existed before this write and is gone.
        Only a credential going away can orphan (pins to missing ids are rejected)."""
        gone = before.difference(self._credentials)
        if not gone:
            return {}
        out = {}
        for aid, a in self._assistants.items():
            hit = [c for c in a.get("credentialIds") or () if c in gone]
            if hit:
                out[aid] = hit[0]
        return out

    # --- credentials ---------------------------------------------------------------------

    def _credentials_get(self, request: Request) -> Reply:
        limit, _, items = self._select(request, self._credentials, paged=False)
        return Reply(200, [_scrub(c) for c in items[:limit]])

    def _credentials_post(self, request: Request) -> Reply:
        _check(check_credential_create(request.body))
        now = self._now()
        record = {"id": str(uuid.uuid4()),
                  "orgId": self.org_id, **copy.deepcopy(request.body),
                  "createdAt": now, "updatedAt": now}
        self._credentials[record["id"]] = record
        return Reply(201, _scrub(record), committed=True)

    def _credential_get(self, request: Request, cid: str) -> Reply:
        return Reply(200, _scrub(self._credential(cid)))

    def _credential_patch(self, request: Request, cid: str) -> Reply:
        record = self._credential(cid)
        _check(check_credential_update(request.body, record["provider"]))
        record.update(copy.deepcopy(request.body))  # apiKey rotates in place
        record["updatedAt"] = self._now()
        return Reply(200, _scrub(record), committed=True)

    def _credential_delete(self, request: Request, cid: str) -> Reply:
        record = self._credential(cid)
        del self._credentials[cid]  # even when assistants pin it: the contract knows no 409
        return Reply(200, _scrub(record), committed=True)

    def _credential(self, cid: str) -> dict:
        if cid not in self._credentials:
            raise _Fail(404, "Credential not found")  # NestJS shape; text is a guess
        return self._credentials[cid]

    # --- assistants ----------------------------------------------------------------------

    def _assistants_get(self, request: Request) -> Reply:
        limit, _, items = self._select(request, self._assistants, paged=False)
        return Reply(200, [self._assistant_view(a) for a in items[:limit]])

    def _assistants_v2_get(self, request: Request) -> Reply:
        limit, page, items = self._select(request, self._assistants, paged=True)
        start = (page - 1) * limit
        return Reply(200, {"results": [self._assistant_view(a) for a in items[start:start + limit]],
                           "metadata": {"itemsPerPage": limit, "totalItems": len(items),
                                        "currentPage": page}})

    def _assistants_post(self, request: Request) -> Reply:
        self._check_assistant(request.body)
        now = self._now()
        record = {"id": str(uuid.uuid4()),
                  "orgId": self.org_id, **copy.deepcopy(request.body),
                  "createdAt": now, "updatedAt": now}
        self._assistants[record["id"]] = record
        return Reply(201, self._assistant_view(record), committed=True)

    def _assistant_get(self, request: Request, aid: str) -> Reply:
        return Reply(200, self._assistant_view(self._assistant(aid)))

    def _assistant_patch(self, request: Request, aid: str) -> Reply:
        record = self._assistant(aid)
        self._check_assistant(request.body)
        # Shallow replacement (GITOPS learnings): a sent object/array replaces the whole
        # subtree, so PATCH {model: {...}} without messages drops the system prompt.
        record.update(copy.deepcopy(request.body))
        record["updatedAt"] = self._now()
        return Reply(200, self._assistant_view(record), committed=True)

    def _assistant_put(self, request: Request, aid: str) -> Reply:
        record = self._assistant(aid)  # EXT "Replace Assistant": every field not sent is gone
        self._check_assistant(request.body)
        meta = {k: record[k] for k in ("id", "orgId", "createdAt")}
        self._assistants[aid] = {**meta, **copy.deepcopy(request.body), "updatedAt": self._now()}
        return Reply(200, self._assistant_view(self._assistants[aid]), committed=True)

    def _assistant_delete(self, request: Request, aid: str) -> Reply:
        record = self._assistant(aid)
        del self._assistants[aid]
        return Reply(200, self._assistant_view(record), committed=True)

    def _assistant(self, aid: str) -> dict:
        if aid not in self._assistants:
            raise _Fail(404, "Assistant not found")  # NestJS shape; text is a guess
        return self._assistants[aid]

    def _check_assistant(self, body: dict) -> None:
        _check(check_assistant(body))
        for cid in body.get("credentialIds") or ():
            if cid.lower() not in self._credentials:
                # GITOPS README names the error "Credential with ID not found"; the exact
                # text (and whether it carries the id) is a guess.
                raise _Fail(400, f"Credential with ID {cid} not found")

    @staticmethod
    def _assistant_view(record: dict) -> dict:
        return {**_scrub(record), "isServerUrlSecretSet": False}  # GITOPS strips it: returned

    # --- shared --------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", "replace"), self.api_key.encode("utf-8"))

    def _select(self, request: Request, table: dict[str, dict],
                paged: bool) -> tuple[int, int, list[dict]]:
        """(limit, page, every matching item in order). Unpaged lists are newest first
        (a guess; /v2's sortOrder defaults to DESC); query keys no DTO declares are 400."""
        allowed = (*_DATE_FILTERS, "limit", *(("page", "sortOrder") if paged else ()))
        _check([f"property {k} should not exist" for k in request.query if k not in allowed])
        limit = _int_arg(request, "limit", self.list_default_limit, 0, MAX_LIMIT)
        page = _int_arg(request, "page", 1, 1, None) if paged else 1
        order = request.arg("sortOrder") or "DESC"
        _check([] if order in ("ASC", "DESC") else
               ["sortOrder must be one of the following values: ASC, DESC"])
        tests = [(key[:-2], _COMPARE[key[-2:]], _date_arg(request, key))
                 for key in _DATE_FILTERS if request.arg(key) is not None]
        rows = [r for r in table.values()
                if all(cmp(parse_time(r[field]), bound) for field, cmp, bound in tests)]
        ranked = sorted(enumerate(rows), key=lambda p: (p[1]["createdAt"], p[0]),
                        reverse=order == "DESC")
        return limit, page, [r for _, r in ranked]

    def _now(self) -> str:
        """Now, strictly after the last timestamp handed out, so date filters and
        newest-first order are deterministic even within one millisecond."""
        now = dt.datetime.now(dt.timezone.utc)
        moment = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self._last = max(moment, self._last + dt.timedelta(milliseconds=1))
        return iso_ms(self._last)

    def _seeded(self, entry: dict, index: int) -> dict:
        stamp = iso_ms(_SEED_EPOCH + dt.timedelta(seconds=index))
        record = {"id": entry["id"], "orgId": self.org_id, **copy.deepcopy(entry)}
        record.setdefault("createdAt", stamp)
        record.setdefault("updatedAt", record["createdAt"])
        return record


def _route(method: str, path: str) -> tuple[str, str | None] | None:
    for pattern, name, methods in _ROUTES:
        match = pattern.match(path)
        if match and method in methods:
            return name, (match.group(1) if match.groups() else None)
    return None


def _check(errors: list[str]) -> None:
    if errors:
        raise _Fail(400, errors)


def _int_arg(request: Request, name: str, default: int, lo: int, hi: int | None) -> int:
    raw = request.arg(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _Fail(400, [f"{name} must be a number conforming to the specified constraints"])
    if value < lo:
        raise _Fail(400, [f"{name} must not be less than {lo}"])
    if hi is not None and value > hi:
        raise _Fail(400, [f"{name} must not be greater than {hi}"])
    return int(value)


def _date_arg(request: Request, name: str) -> dt.datetime:
    try:
        return parse_time(request.arg(name) or "")
    except ValueError:
        raise _Fail(400, [f"{name} must be a valid ISO 8601 date string"]) from None
