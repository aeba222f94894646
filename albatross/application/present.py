"""Resource views built from aggregate state, for command responses.

Command responses cannot wait for the read models, so they are built from the state the
command just produced; the projector builds the same views from the same events.
"""

from __future__ import annotations

from albatross.application.views import PirepView, TenantView, UserView
from albatross.domain.pireps import Pirep
from albatross.domain.tenants import Tenant
from albatross.domain.users import User


def tenant_view(tenant: Tenant, pilot_count: int = 0) -> TenantView:
    return TenantView(id=tenant.tenant_id, name=tenant.name, icao=tenant.icao, iata=tenant.iata,
                      created_at=tenant.created_at, pilot_count=pilot_count)


def user_view(user: User, *, flight_count: int = 0, flight_minutes: int = 0) -> UserView:
    return UserView(id=user.user_id, email=user.email, display_name=user.display_name,
                    role=user.role, tenant_id=user.tenant_id, created_at=user.created_at,
                    must_change_password=user.must_change_password, flight_count=flight_count,
                    flight_minutes=flight_minutes)


def pirep_view(pirep: Pirep, version: int) -> PirepView:
    d = pirep.details
    return PirepView(
        id=pirep.pirep_id, tenant_id=pirep.tenant_id, pilot_id=pirep.pilot_id,
        status=pirep.status, flight_number=d.flight_number, departure=d.departure,
        arrival=d.arrival, aircraft_type=d.aircraft_type,
        aircraft_registration=d.aircraft_registration, block_off_at=d.block_off_at,
        block_on_at=d.block_on_at, flight_time_minutes=d.flight_time_minutes,
        fuel_used_kg=d.fuel_used_kg, distance_nm=d.distance_nm,
        landing_rate_fpm=d.landing_rate_fpm, route=d.route, remarks=d.remarks, source=d.source,
        submitted_at=pirep.submitted_at, reviewed_at=pirep.reviewed_at,
        reviewed_by=pirep.reviewed_by, review_comment=pirep.review_comment, version=version)
