"""Handlers: tenants."""

from __future__ import annotations

from aiohttp import web

from albatross.ports import InvalidCursor
from albatross.services.gateway.deps import DEPS, PRINCIPAL
from albatross.services.gateway.http import decode_body, json_response, page_params
from albatross.services.gateway.problems import ApiError
from albatross.services.gateway.schemas import FieldProblem, TenantInput, TenantPage


def bad_cursor() -> ApiError:
    return ApiError("validation_failed", "the cursor is not valid for this list",
                    errors=[FieldProblem(field="cursor", message="is not a cursor we issued")])


async def create_tenant(request: web.Request) -> web.Response:
    body = await decode_body(request, TenantInput)
    done = await request.app[DEPS].commands.create_tenant(
        request[PRINCIPAL], name=body.name, icao=body.icao, iata=body.iata)
    return json_response(done.value, status=201, sequence=done.sequence,
                         headers={"Location": f"/api/tenants/{done.value.id}"})


async def list_tenants(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    try:
        page = await request.app[DEPS].read_models.list_tenants(request[PRINCIPAL], limit=limit,
                                                               cursor=cursor)
    except InvalidCursor:
        raise bad_cursor() from None
    return json_response(TenantPage(items=page.items, next_cursor=page.next_cursor))


async def get_tenant(request: web.Request) -> web.Response:
    tenant = await request.app[DEPS].read_models.get_tenant(request[PRINCIPAL],
                                                           request.match_info["tenant_id"])
    if tenant is None:
        raise ApiError("not_found", "no such tenant")
    return json_response(tenant)
