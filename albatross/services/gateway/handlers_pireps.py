"""Handlers: PIREPs."""

from __future__ import annotations

from aiohttp import hdrs, web

from albatross.ports import InvalidCursor
from albatross.services.gateway.deps import DEPS, PRINCIPAL
from albatross.services.gateway.handlers_tenants import bad_cursor
from albatross.services.gateway.http import (
    decode_body,
    idempotency_key,
    if_match_versions,
    json_response,
    none_match,
    not_modified,
    page_params,
    query_choice,
    query_str,
)
from albatross.services.gateway.problems import ApiError
from albatross.services.gateway.schemas import (
    History,
    HistoryEntry,
    PirepInput,
    PirepPage,
    ReviewInput,
    StatusFilter,
)


def _etag(version: int) -> str:
    return f'"{version}"'


async def submit_pirep(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    details = await decode_body(request, PirepInput)
    done = await request.app[DEPS].commands.submit_pirep(request[PRINCIPAL], details,
                                                         idempotency_key=key)
    headers: dict[str, str] = {hdrs.LOCATION: f"/api/pireps/{done.value.id}",
                               hdrs.ETAG: _etag(done.value.version)}
    if done.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(done.value, status=201, sequence=done.sequence, headers=headers)


async def review_pirep(request: web.Request) -> web.Response:
    expected = if_match_versions(request)
    body = await decode_body(request, ReviewInput)
    done = await request.app[DEPS].commands.review_pirep(
        request[PRINCIPAL], request.match_info["pirep_id"], decision=body.decision,
        comment=body.comment, if_match=expected)
    return json_response(done.value, sequence=done.sequence,
                         headers={hdrs.ETAG: _etag(done.value.version)})


async def list_pireps(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    status = query_choice(request, "status", StatusFilter)
    try:
        page = await request.app[DEPS].read_models.list_pireps(
            request[PRINCIPAL], status=status, pilot_id=query_str(request, "pilot_id"),
            tenant_id=query_str(request, "tenant_id"), limit=limit, cursor=cursor)
    except InvalidCursor:
        raise bad_cursor() from None
    return json_response(PirepPage(items=page.items, next_cursor=page.next_cursor))


def _no_cache(request: web.Request) -> bool:
    """RFC 9111: a request's ``no-cache`` (or ``Pragma: no-cache``) forbids a stored answer."""
    directives = request.headers.get("Cache-Control", "") + "," + request.headers.get(
        "Pragma", "")
    return "no-cache" in directives.lower()


async def get_pirep(request: web.Request) -> web.Response:
    pirep = await request.app[DEPS].read_models.get_pirep(
        request[PRINCIPAL], request.match_info["pirep_id"], fresh=_no_cache(request))
    if pirep is None:
        raise ApiError("not_found", "no such PIREP")
    etag = _etag(pirep.version)
    if none_match(request, etag):
        return not_modified(etag)
    return json_response(pirep, headers={hdrs.ETAG: etag})


async def pirep_history(request: web.Request) -> web.Response:
    items = await request.app[DEPS].read_models.pirep_history(request[PRINCIPAL],
                                                             request.match_info["pirep_id"])
    if items is None:
        raise ApiError("not_found", "no such PIREP")
    return json_response(History(items=[
        HistoryEntry(sequence=i.sequence, type=i.type, occurred_at=i.occurred_at,
                     actor_id=i.actor_id, data=i.data) for i in items]))
