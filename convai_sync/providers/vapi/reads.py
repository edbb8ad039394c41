"""Reading whole lists from Vapi without ever planning on a cut one.

`GET /credential` and `GET /assistant` return bare arrays of at most `limit`
(1000) items and say nothing about what is left out. A list of exactly 1000 may
be cut: assistants are then read again from `/v2/assistant`, which pages and
counts; credentials cannot be paged, so that read is refused."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...errors import ApiError
from ..http import HttpSession
from ..replies import checked_items

LIMIT = 1000  # the most Vapi returns in one list request


def credentials(http: HttpSession) -> list[dict[str, Any]]:
    items = _bare_list(http, "/credential", "credential list")
    if len(items) >= LIMIT:
        raise ApiError("GET /credential", "credential list", 200,
                       f"the list holds {len(items)} credentials, the most Vapi returns in one "
                       "request, and Vapi cannot page credentials, so some may be missing",
                       "nothing was written: a plan on a cut list could delete or duplicate "
                       "credentials. Delete credentials nobody uses (in the Vapi dashboard) "
                       f"until fewer than {LIMIT} remain, then run again")
    return items


def assistants(http: HttpSession, parallelism: int) -> list[dict[str, Any]]:
    items = _bare_list(http, "/assistant", "assistant list")
    return items if len(items) < LIMIT else _paged_assistants(http, parallelism)


def _bare_list(http: HttpSession, path: str, what: str) -> list[dict[str, Any]]:
    payload = http.call("GET", path, None, what, params={"limit": str(LIMIT)})
    if not isinstance(payload, list):
        raise ApiError(f"GET {path}", what, 200, "unexpected reply shape (not a list)",
                       "the API may have changed; nothing was written. Please report this")
    return checked_items(f"GET {path}", what, payload, ("id",), ("name",))


def _paged_assistants(http: HttpSession, parallelism: int) -> list[dict[str, Any]]:
    """Every assistant from /v2/assistant, all pages; refused if the list
    changed while it was read (a page would be shifted: one item missed)."""
    first, total = _page(http, 1)
    pages = math.ceil(total / LIMIT)
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, pages - 1 or 1))) as pool:
        rest = list(pool.map(lambda n: _page(http, n), range(2, pages + 1)))
    seen: dict[str, dict[str, Any]] = {}
    for items, _ in [(first, total), *rest]:
        for item in items:
            seen.setdefault(item["id"], item)
    if any(count != total for _, count in rest) or len(seen) != total:
        raise ApiError("GET /v2/assistant", "assistant list", 200,
                       f"the list changed while its {pages} pages were read ({total} assistants "
                       f"at first, {len(seen)} read)", "someone is creating or deleting "
                       "assistants right now; nothing was written. Run again in a moment")
    return list(seen.values())


def _page(http: HttpSession, number: int) -> tuple[list[dict[str, Any]], int]:
    try:
        payload = http.call("GET", "/v2/assistant", None, "assistant list",
                            params={"page": str(number), "limit": str(LIMIT)})
    except ApiError as e:
        if e.status != 404:
            raise
        raise ApiError("GET /v2/assistant", "assistant list", 404, e.api_message,
                       f"GET /assistant returned {LIMIT} assistants, the most one request "
                       "returns, and the paged list is not available here, so some may be "
                       "missing; nothing was written. Please report this") from None
    results = payload.get("results") if isinstance(payload, dict) else None
    meta = payload.get("metadata") if isinstance(payload, dict) else None
    total = meta.get("totalItems") if isinstance(meta, dict) else None
    if not isinstance(results, list) or not isinstance(total, int) or isinstance(total, bool):
        raise ApiError("GET /v2/assistant", "assistant list", 200,
                       "unexpected reply shape (no results list or metadata.totalItems)",
                       "the API may have changed; nothing was written. Please report this")
    return checked_items("GET /v2/assistant", "assistant list", results, ("id",), ("name",)), total
