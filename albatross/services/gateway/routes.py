"""The route table: one row per operation, used to register handlers AND to write OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from albatross.application.views import PirepView, TenantView, UserView
from albatross.domain.rules import Role
from albatross.services.gateway import (
    handlers_auth as auth,
)
from albatross.services.gateway import (
    handlers_pireps as pireps,
)
from albatross.services.gateway import (
    handlers_tenants as tenants,
)
from albatross.services.gateway import (
    handlers_users as users,
)
from albatross.services.gateway.schemas import (
    ApiKeyInput,
    ApiKeyPage,
    CreatedApiKey,
    History,
    LoginInput,
    LoginResponse,
    PasswordInput,
    PirepInput,
    PirepPage,
    ReviewInput,
    SetupStatus,
    StatusFilter,
    TenantInput,
    TenantPage,
    UserInput,
    UserPage,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API = "/api"


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # below /api
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    response: Any = None  # a msgspec type, or None for 204 No Content
    status: int = 200
    body: Any = None
    auth: bool = True
    query: tuple[Param, ...] = ()
    errors: tuple[str, ...] = ()
    # Usable while the principal must change its password (contract: /me, logout, this).
    before_password_change: bool = False
    idempotency_key: bool = False
    if_match: bool = False
    # Answered from the gateway's memory between changes (ADR 9) unless the client says no-cache.
    cached: bool = False
    # Its answer carries an ETag, and If-None-Match naming it is answered 304.
    conditional: bool = False

    @property
    def is_command(self) -> bool:
        return self.method != "GET"


_STRING = {"type": "string"}
PAGE = (Param("limit", "Page size, 1..200 (default 50)",
              {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
        Param("cursor", "The next_cursor of the previous page", _STRING))
_ROLES = {"type": "string", "enum": list(Role.__args__)}  # type: ignore[attr-defined]
_STATUSES = {"type": "string", "enum": list(StatusFilter.__args__)}  # type: ignore[attr-defined]

_READ = ("unauthorized", "password_change_required", "not_found", "unavailable")
_LIST = ("unauthorized", "password_change_required", "validation_failed", "unavailable")
_WRITE = ("malformed_request", "unauthorized", "password_change_required", "forbidden",
          "validation_failed", "payload_too_large", "unavailable")

OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", "/auth/login", auth.login, "login", "Log in with email and password",
              "auth", LoginResponse, body=LoginInput, auth=False,
              errors=("malformed_request", "validation_failed", "unauthorized", "rate_limited",
                      "payload_too_large", "unavailable")),
    Operation("POST", "/auth/logout", auth.logout, "logout", "End this session", "auth",
              None, 204, errors=("unauthorized", "unavailable"), before_password_change=True),
    Operation("GET", "/me", auth.me, "getMe", "The caller's own user", "auth", UserView,
              errors=("unauthorized", "unavailable"), before_password_change=True),
    Operation("GET", "/setup", auth.setup_status, "getSetup",
              "Whether the platform has a PlatformAdmin", "auth", SetupStatus, auth=False,
              errors=("unavailable",)),
    Operation("POST", "/tenants", tenants.create_tenant, "createTenant", "Create a tenant",
              "tenants", TenantView, 201, body=TenantInput, errors=(*_WRITE, "icao_taken")),
    Operation("GET", "/tenants", tenants.list_tenants, "listTenants", "Tenants the caller sees",
              "tenants", TenantPage, query=PAGE, errors=_LIST),
    Operation("GET", "/tenants/{tenant_id}", tenants.get_tenant, "getTenant", "One tenant",
              "tenants", TenantView, errors=_READ),
    Operation("POST", "/users", users.register_user, "registerUser", "Register a user", "users",
              UserView, 201, body=UserInput, errors=(*_WRITE, "email_taken")),
    Operation("GET", "/users", users.list_users, "listUsers", "Users the caller sees", "users",
              UserPage, query=(Param("tenant_id", "Only this tenant's users", _STRING),
                               Param("role", "Only users with this role", _ROLES), *PAGE),
              errors=_LIST),
    Operation("GET", "/users/{user_id}", users.get_user, "getUser", "One user", "users",
              UserView, errors=_READ),
    Operation("POST", "/users/{user_id}/password", users.set_password, "setPassword",
              "Change one's own password, or reset another user's", "users", None, 204,
              body=PasswordInput, errors=(*_WRITE, "not_found", "conflict"),
              before_password_change=True),
    Operation("POST", "/users/{user_id}/apikeys", users.create_api_key, "createApiKey",
              "Create an API key (its secret is shown once)", "apikeys", CreatedApiKey, 201,
              body=ApiKeyInput, errors=(*_WRITE, "not_found", "conflict")),
    Operation("GET", "/users/{user_id}/apikeys", users.list_api_keys, "listApiKeys",
              "A user's API keys, revoked ones included", "apikeys", ApiKeyPage, query=PAGE,
              errors=(*_LIST, "forbidden", "not_found")),
    Operation("DELETE", "/users/{user_id}/apikeys/{key_id}", users.revoke_api_key,
              "revokeApiKey", "Revoke an API key", "apikeys", None, 204,
              errors=("unauthorized", "password_change_required", "forbidden", "not_found",
                      "invalid_state", "conflict", "unavailable")),
    Operation("POST", "/pireps", pireps.submit_pirep, "submitPirep", "File a PIREP", "pireps",
              PirepView, 201, body=PirepInput, errors=(*_WRITE, "conflict"),
              idempotency_key=True),
    Operation("GET", "/pireps", pireps.list_pireps, "listPireps", "PIREPs, newest first",
              "pireps", PirepPage,
              query=(Param("status", "Only PIREPs in this status", _STATUSES),
                     Param("pilot_id", "Only this pilot's PIREPs", _STRING),
                     Param("tenant_id", "Only this tenant's PIREPs", _STRING), *PAGE),
              errors=_LIST),
    Operation("GET", "/pireps/{pirep_id}", pireps.get_pirep, "getPirep", "One PIREP", "pireps",
              PirepView, errors=_READ, cached=True, conditional=True),
    Operation("POST", "/pireps/{pirep_id}/review", pireps.review_pirep, "reviewPirep",
              "Accept or reject a pending PIREP", "pireps", PirepView, body=ReviewInput,
              errors=(*_WRITE, "not_found", "invalid_state", "conflict",
                      "precondition_failed"), if_match=True),
    Operation("GET", "/pireps/{pirep_id}/history", pireps.pirep_history, "getPirepHistory",
              "The PIREP's events, oldest first", "pireps", History, errors=_READ),
)
