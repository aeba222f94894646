"""Role-based access control: the contract's role table, in one pure module.

Every rule answers with a :class:`Verdict`. ``HIDDEN`` means the caller may not even know the
resource exists (the API answers 404, never 403 across tenants); ``FORBIDDEN`` means the caller
can see it but may not do this (403). The gateway's handlers, the read-model queries and the
notifier's per-socket filter all ask this module, so they cannot drift apart.
"""

from __future__ import annotations

import enum

import msgspec

from albatross.application.principal import Principal
from albatross.application.views import ApiKeyView, Resource, TenantView, UserView
from albatross.domain.rules import Role


class Verdict(enum.Enum):
    ALLOW = "allow"
    FORBIDDEN = "forbidden"
    HIDDEN = "hidden"


ALLOW, FORBIDDEN, HIDDEN = Verdict.ALLOW, Verdict.FORBIDDEN, Verdict.HIDDEN


def _in_scope(principal: Principal, tenant_id: str | None) -> bool:
    """Whether a resource of ``tenant_id`` is visible at all to ``principal``."""
    return principal.is_platform_admin or (
        principal.tenant_id is not None and principal.tenant_id == tenant_id)


def _unless_hidden(principal: Principal, tenant_id: str | None, allowed: bool) -> Verdict:
    if not _in_scope(principal, tenant_id):
        return HIDDEN
    return ALLOW if allowed else FORBIDDEN


# Tenants ------------------------------------------------------------------------------------

def create_tenant(principal: Principal) -> Verdict:
    return ALLOW if principal.is_platform_admin else FORBIDDEN


def see_tenant(principal: Principal, tenant_id: str) -> Verdict:
    return ALLOW if _in_scope(principal, tenant_id) else HIDDEN


# Users --------------------------------------------------------------------------------------

def register_user(principal: Principal, role: Role, tenant_id: str | None) -> Verdict:
    if principal.is_platform_admin:
        return ALLOW
    if principal.role != "TenantAdmin":
        return FORBIDDEN
    if role == "PlatformAdmin" or tenant_id != principal.tenant_id:
        return FORBIDDEN
    return ALLOW


def see_user(principal: Principal, user_tenant_id: str | None) -> Verdict:
    return ALLOW if _in_scope(principal, user_tenant_id) else HIDDEN


def see_email(principal: Principal, user_id: str, user_tenant_id: str | None) -> bool:
    if principal.user_id == user_id or principal.is_platform_admin:
        return True
    return principal.role == "TenantAdmin" and principal.tenant_id == user_tenant_id


def change_own_password(principal: Principal, user_id: str) -> Verdict:
    return ALLOW if principal.user_id == user_id else FORBIDDEN


def reset_password(principal: Principal, user_id: str, user_role: Role,
                   user_tenant_id: str | None) -> Verdict:
    allowed = principal.is_platform_admin or (
        principal.role == "TenantAdmin" and user_role != "PlatformAdmin")
    return _unless_hidden(principal, user_tenant_id, allowed and principal.user_id != user_id)


def manage_api_keys(principal: Principal, user_id: str, user_tenant_id: str | None) -> Verdict:
    allowed = (principal.is_platform_admin or principal.role == "TenantAdmin"
               or principal.user_id == user_id)
    return _unless_hidden(principal, user_tenant_id, allowed)


# PIREPs -------------------------------------------------------------------------------------

def submit_pirep(principal: Principal) -> Verdict:
    allowed = principal.role in ("TenantAdmin", "Pilot") and principal.tenant_id is not None
    return ALLOW if allowed else FORBIDDEN


def see_pirep(principal: Principal, tenant_id: str) -> Verdict:
    return ALLOW if _in_scope(principal, tenant_id) else HIDDEN


def review_pirep(principal: Principal, tenant_id: str) -> Verdict:
    allowed = principal.is_platform_admin or principal.role == "TenantAdmin"
    return _unless_hidden(principal, tenant_id, allowed)


# What a recipient may receive ---------------------------------------------------------------

def visible_resource(principal: Principal, resource: Resource,
                     tenant_id: str | None) -> Resource | None:
    """The resource as ``principal``'s GET would return it, or None if it may not see it.

    ``tenant_id`` is the tenant the resource belongs to (for an API key: its owner's), as the
    change message carries it. The notifier filters every change message through this, and
    the queries apply the same rules in SQL; a test checks the two agree.
    """
    if isinstance(resource, TenantView):
        return resource if see_tenant(principal, resource.id) is ALLOW else None
    if isinstance(resource, UserView):
        if see_user(principal, resource.tenant_id) is not ALLOW:
            return None
        if resource.email is not None and not see_email(principal, resource.id,
                                                        resource.tenant_id):
            return msgspec.structs.replace(resource, email=None)
        return resource
    if isinstance(resource, ApiKeyView):
        allowed = manage_api_keys(principal, resource.user_id, tenant_id) is ALLOW
        return resource if allowed else None
    return resource if see_pirep(principal, resource.tenant_id) is ALLOW else None
