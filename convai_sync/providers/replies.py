"""Strict reading of list replies, for every platform.

A plan made on a misread account writes on a lie: a character dropped because
its id was null looked like nobody used its model, and the model was
deregistered; a list that said `next_page` was taken as complete; of two
entries for one model the last silently won. So a list reply is refused, with
the call named and nothing written, when it is malformed (an item without a
string id, a name that is not text), ambiguous (two items with one id) or
possibly incomplete (an error envelope, a paging hint, a total larger than the
list)."""
from __future__ import annotations

from typing import Any, Sequence

from ..errors import ApiError

# keys that say a list is one page of more
PAGING_HINTS = ("next_page", "nextPage", "next", "next_cursor", "nextCursor", "cursor",
                "has_more", "hasMore", "more", "continuation_token")
TOTALS = ("total", "total_count", "totalCount", "count", "totalItems")
_ERROR_STATUSES = ("error", "fail", "failed", "failure")
_HINT = "nothing was written: a plan on a misread account could deregister a model in use"


def refuse(call: str, what: str, message: str, hint: str = _HINT) -> ApiError:
    return ApiError(call, what, 200, message, hint)


def list_in(call: str, what: str, payload: Any, key: str | None) -> list[Any]:
    """The list a reply carries (`payload[key]`, or the payload itself), refused
    when the reply says it failed or may be a page of a longer list."""
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, dict):
        raise refuse(call, what, "unexpected reply shape (not a list or an object)")
    _refuse_error_envelope(call, what, payload)
    items = payload.get(key) if key else None
    if not isinstance(items, list):
        raise refuse(call, what, f"unexpected reply shape (no '{key}' list)",
                     "the API may have changed; nothing was written. Please report this")
    refuse_paging(call, what, payload, len(items))
    return items


def _refuse_error_envelope(call: str, what: str, payload: dict[str, Any]) -> None:
    status = payload.get("status")
    if (isinstance(status, str) and status.lower() in _ERROR_STATUSES) or payload.get("error") \
            or payload.get("errors"):
        said = next((payload[k] for k in ("message", "error", "ERROR", "detail")
                     if isinstance(payload.get(k), str)), status)
        raise refuse(call, what, f"the reply says the call failed (status {status!r}: {said!r}), "
                     "though its HTTP status is 200")


def refuse_paging(call: str, what: str, payload: dict[str, Any], size: int) -> None:
    for hint in PAGING_HINTS:
        if payload.get(hint) not in (None, False, "", 0):
            raise refuse(call, what, f"the reply carries '{hint}', so the list of {size} may be "
                         "one page of more, and convai-sync does not page this call")
    for key in TOTALS:
        total = payload.get(key)
        if isinstance(total, int) and not isinstance(total, bool) and total > size:
            raise refuse(call, what, f"the reply says '{key}': {total}, but lists {size}: the "
                         "list is incomplete")


def checked_items(call: str, what: str, items: list[Any], id_keys: Sequence[str],
                  text_keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The items, each an object with a non-empty string id (the first of
    `id_keys` present) and text (or null) under `text_keys`; ids unique."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise refuse(call, what, f"item {index} is not an object ({type(item).__name__})")
        ident = next((item[k] for k in id_keys if item.get(k) is not None), None)
        if not isinstance(ident, str) or not ident:
            raise refuse(call, what, f"item {index} has no {' or '.join(id_keys)} string "
                         f"(got {ident!r})")
        for key in text_keys:
            if item.get(key) is not None and not isinstance(item[key], str):
                raise refuse(call, what, f"item {index} ({ident!r}) has a {key} that is not text "
                             f"({type(item[key]).__name__})")
        if ident in seen:
            raise refuse(call, what, f"items {seen[ident]} and {index} are both {ident!r}: the "
                         "list is ambiguous")
        seen[ident] = index
    return items
