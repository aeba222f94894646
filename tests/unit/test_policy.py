"""The contract's role table, row by row, against the pure policy module."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from albatross.application import policy
from albatross.application.policy import ALLOW, FORBIDDEN, HIDDEN, Verdict
from albatross.application.principal import Principal
from albatross.application.views import UserView

OWN, OTHER = "tenant-own", "tenant-other"
PA = Principal(user_id="pa", role="PlatformAdmin", tenant_id=None)
TA = Principal(user_id="ta", role="TenantAdmin", tenant_id=OWN)
PILOT = Principal(user_id="pilot", role="Pilot", tenant_id=OWN)
ROLES = {"PlatformAdmin": PA, "TenantAdmin": TA, "Pilot": PILOT}

Rule = Callable[[Principal], Verdict]

# (action, case, {role: expected verdict})
TABLE: list[tuple[str, str, Rule, dict[str, Verdict]]] = [
    ("create tenant", "-", policy.create_tenant,
     {"PlatformAdmin": ALLOW, "TenantAdmin": FORBIDDEN, "Pilot": FORBIDDEN}),
    ("see tenants", "own", lambda p: policy.see_tenant(p, OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": ALLOW}),
    ("see tenants", "other", lambda p: policy.see_tenant(p, OTHER),
     {"PlatformAdmin": ALLOW, "TenantAdmin": HIDDEN, "Pilot": HIDDEN}),
    ("register user", "Pilot in own tenant", lambda p: policy.register_user(p, "Pilot", OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": FORBIDDEN}),
    ("register user", "TenantAdmin in own tenant",
     lambda p: policy.register_user(p, "TenantAdmin", OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": FORBIDDEN}),
    ("register user", "Pilot in other tenant", lambda p: policy.register_user(p, "Pilot", OTHER),
     {"PlatformAdmin": ALLOW, "TenantAdmin": FORBIDDEN, "Pilot": FORBIDDEN}),
    ("register user", "PlatformAdmin", lambda p: policy.register_user(p, "PlatformAdmin", None),
     {"PlatformAdmin": ALLOW, "TenantAdmin": FORBIDDEN, "Pilot": FORBIDDEN}),
    ("see users", "own tenant", lambda p: policy.see_user(p, OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": ALLOW}),
    ("see users", "other tenant", lambda p: policy.see_user(p, OTHER),
     {"PlatformAdmin": ALLOW, "TenantAdmin": HIDDEN, "Pilot": HIDDEN}),
    ("see users", "a PlatformAdmin", lambda p: policy.see_user(p, None),
     {"PlatformAdmin": ALLOW, "TenantAdmin": HIDDEN, "Pilot": HIDDEN}),
    ("change own password", "self", lambda p: policy.change_own_password(p, p.user_id),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": ALLOW}),
    ("reset password", "own-tenant Pilot",
     lambda p: policy.reset_password(p, "u1", "Pilot", OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": FORBIDDEN}),
    ("reset password", "own-tenant TenantAdmin",
     lambda p: policy.reset_password(p, "u2", "TenantAdmin", OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": FORBIDDEN}),
    ("reset password", "other-tenant Pilot",
     lambda p: policy.reset_password(p, "u3", "Pilot", OTHER),
     {"PlatformAdmin": ALLOW, "TenantAdmin": HIDDEN, "Pilot": HIDDEN}),
    ("reset password", "another PlatformAdmin",
     lambda p: policy.reset_password(p, "pa2", "PlatformAdmin", None),
     {"PlatformAdmin": ALLOW, "TenantAdmin": HIDDEN, "Pilot": HIDDEN}),
    ("API keys", "self", lambda p: policy.manage_api_keys(p, p.user_id, p.tenant_id),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": ALLOW}),
    ("API keys", "own-tenant user", lambda p: policy.manage_api_keys(p, "u1", OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": FORBIDDEN}),
    ("API keys", "other-tenant user", lambda p: policy.manage_api_keys(p, "u3", OTHER),
     {"PlatformAdmin": ALLOW, "TenantAdmin": HIDDEN, "Pilot": HIDDEN}),
    ("submit PIREP", "-", policy.submit_pirep,
     {"PlatformAdmin": FORBIDDEN, "TenantAdmin": ALLOW, "Pilot": ALLOW}),
    ("see PIREPs", "own tenant", lambda p: policy.see_pirep(p, OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": ALLOW}),
    ("see PIREPs", "other tenant", lambda p: policy.see_pirep(p, OTHER),
     {"PlatformAdmin": ALLOW, "TenantAdmin": HIDDEN, "Pilot": HIDDEN}),
    ("review PIREP", "own tenant", lambda p: policy.review_pirep(p, OWN),
     {"PlatformAdmin": ALLOW, "TenantAdmin": ALLOW, "Pilot": FORBIDDEN}),
    ("review PIREP", "other tenant", lambda p: policy.review_pirep(p, OTHER),
     {"PlatformAdmin": ALLOW, "TenantAdmin": HIDDEN, "Pilot": HIDDEN}),
]

CASES = [pytest.param(rule, role, expected[role], id=f"{action}/{case}/{role}")
         for action, case, rule, expected in TABLE for role in ROLES]


@pytest.mark.parametrize(("rule", "role", "expected"), CASES)
def test_role_table(rule: Rule, role: str, expected: Verdict) -> None:
    assert rule(ROLES[role]) is expected


def test_a_principal_without_a_tenant_sees_no_tenant_resource() -> None:
    orphan = Principal(user_id="x", role="Pilot", tenant_id=None)
    assert policy.see_pirep(orphan, OWN) is HIDDEN
    assert policy.submit_pirep(orphan) is FORBIDDEN


@pytest.mark.parametrize(("role", "sees_email"), [("PlatformAdmin", True),
                                                  ("TenantAdmin", True), ("Pilot", False)])
def test_pilots_see_no_email_of_others(role: str, sees_email: bool) -> None:
    other = UserView(id="u9", email="u9@example.com", display_name="U9", role="Pilot",
                     tenant_id=OWN, created_at=datetime(2026, 1, 1, tzinfo=UTC),
                     must_change_password=False, flight_count=0, flight_minutes=0)
    shown = policy.visible_resource(ROLES[role], other, OWN)
    assert shown is not None
    assert (shown.email is not None) is sees_email  # type: ignore[union-attr]
    own = UserView(**{**{f: getattr(other, f) for f in other.__struct_fields__},
                      "id": ROLES[role].user_id})
    assert policy.visible_resource(ROLES[role], own, OWN).email is not None  # type: ignore[union-attr]
