"""Handlers: users, passwords and API keys."""

from __future__ import annotations

from aiohttp import web

from albatross.application import policy
from albatross.domain.rules import Role
from albatross.ports import InvalidCursor
from albatross.services.gateway.deps import DEPS, PRINCIPAL
from albatross.services.gateway.handlers_tenants import bad_cursor
from albatross.services.gateway.http import (
    decode_body,
    json_response,
    no_content,
    page_params,
    query_choice,
    query_str,
)
from albatross.services.gateway.problems import ApiError
from albatross.services.gateway.schemas import (
    ApiKeyInput,
    ApiKeyItem,
    ApiKeyPage,
    CreatedApiKey,
    PasswordInput,
    UserInput,
    UserPage,
)


async def register_user(request: web.Request) -> web.Response:
    body = await decode_body(request, UserInput)
    done = await request.app[DEPS].commands.register_user(
        request[PRINCIPAL], email=body.email, display_name=body.display_name,
        password=body.password, role=body.role, tenant_id=body.tenant_id,
        must_change_password=body.must_change_password)
    return json_response(done.value, status=201, sequence=done.sequence,
                         headers={"Location": f"/api/users/{done.value.id}"})


async def list_users(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    role: Role | None = query_choice(request, "role", Role)
    try:
        page = await request.app[DEPS].read_models.list_users(
            request[PRINCIPAL], tenant_id=query_str(request, "tenant_id"), role=role,
            limit=limit, cursor=cursor)
    except InvalidCursor:
        raise bad_cursor() from None
    return json_response(UserPage(items=page.items, next_cursor=page.next_cursor))


async def get_user(request: web.Request) -> web.Response:
    user = await request.app[DEPS].read_models.get_user(request[PRINCIPAL],
                                                       request.match_info["user_id"])
    if user is None:
        raise ApiError("not_found", "no such user")
    return json_response(user)


async def set_password(request: web.Request) -> web.Response:
    body = await decode_body(request, PasswordInput)
    deps = request.app[DEPS]
    sequence = await deps.commands.change_password(
        request[PRINCIPAL], request.match_info["user_id"], new_password=body.new_password,
        current_password=body.current_password)
    return no_content(sequence)


async def create_api_key(request: web.Request) -> web.Response:
    body = await decode_body(request, ApiKeyInput)
    done = await request.app[DEPS].commands.create_api_key(
        request[PRINCIPAL], request.match_info["user_id"], name=body.name)
    key = done.value
    response = CreatedApiKey(id=key.id, name=key.name, prefix=key.prefix, key=key.key,
                             created_at=key.created_at)
    return json_response(response, status=201, sequence=done.sequence)


async def list_api_keys(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    principal = request[PRINCIPAL]
    limit, cursor = page_params(request)
    user_id = request.match_info["user_id"]
    user = await deps.read_models.get_user(principal, user_id)
    if user is None:
        raise ApiError("not_found", "no such user")
    verdict = policy.manage_api_keys(principal, user.id, user.tenant_id)
    if verdict is not policy.ALLOW:
        raise ApiError("forbidden", "you may not see this user's API keys")
    try:
        page = await deps.read_models.list_api_keys(principal, user_id, limit=limit,
                                                    cursor=cursor)
    except InvalidCursor:
        raise bad_cursor() from None
    return json_response(ApiKeyPage(items=[ApiKeyItem.of(k) for k in page.items],
                                    next_cursor=page.next_cursor))


async def revoke_api_key(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    sequence = await deps.commands.revoke_api_key(
        request[PRINCIPAL], request.match_info["user_id"], request.match_info["key_id"])
    return no_content(sequence)
