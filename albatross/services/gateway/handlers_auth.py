"""Handlers: login, logout, the caller's own user, and the setup status."""

from __future__ import annotations

from aiohttp import web

from albatross.application.present import user_view
from albatross.application.principal import Principal
from albatross.application.setup import is_initialized
from albatross.application.views import UserView
from albatross.services.gateway.deps import DEPS, PRINCIPAL, SECRET
from albatross.services.gateway.http import decode_body, json_response, no_content
from albatross.services.gateway.problems import DEPENDENCY_ERRORS
from albatross.services.gateway.schemas import LoginInput, LoginResponse, SetupStatus


async def login(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    body = await decode_body(request, LoginInput)
    result = await deps.login.login(body.email, body.password, address=request.remote)
    user = result.user
    principal = Principal(user_id=user.user_id, role=user.role, tenant_id=user.tenant_id)
    view = await _projected_user(request, principal) or user_view(user)
    response = LoginResponse(token=result.token, expires_at=result.expires_at,
                             must_change_password=user.must_change_password, user=view)
    # A login appends nothing the read models need: there is nothing to wait for.
    return json_response(response, sequence=0)


async def logout(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    secret = request[SECRET]
    await deps.login.logout(secret)
    deps.authenticator.forget(secret)
    return no_content(0)


async def me(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    view = await _projected_user(request, principal)
    if view is None:
        # The read model has not caught up with a brand-new user yet.
        view = await request.app[DEPS].commands.stored_user(principal.user_id)
    return json_response(view)


async def setup_status(request: web.Request) -> web.Response:
    initialized = await is_initialized(request.app[DEPS].claims)
    return json_response(SetupStatus(initialized=initialized))


async def _projected_user(request: web.Request, principal: Principal) -> UserView | None:
    try:
        return await request.app[DEPS].read_models.get_user(principal, principal.user_id)
    except DEPENDENCY_ERRORS:
        return None  # the flight figures are a nicety here; the login must not depend on them
