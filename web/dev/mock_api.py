"""A throwaway in-memory stand-in for the Albatross API, for UI development and screenshots.

Not the product and not a test oracle: the real API is the gateway (`albatross up`), and the
end-to-end test runs against that. This speaks enough of /work/shared/contract.md (REST,
problem+json, cursor pages, Albatross-Sequence, the /api/ws protocol) to click through every
screen while the backend is being built, and serves web/dist with an SPA fallback.

    ../.venv/bin/python dev/mock_api.py --port 8090 [--seed 1000]

Sign in as admin@albatross.local / admin-password-1 (or any seeded user with password
"password-12345").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

DIST = Path(__file__).resolve().parent.parent / "dist"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    # time-ordered like UUIDv7
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def problem(status: int, code: str, title: str, detail: str | None = None,
            errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return web.Response(status=status, text=json.dumps(body),
                        content_type="application/problem+json", headers=headers)


@dataclass
class State:
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    apikeys: dict[str, dict[str, Any]] = field(default_factory=dict)
    pireps: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    sockets: dict[web.WebSocketResponse, dict[str, Any]] = field(default_factory=dict)
    event_seq: int = 0
    delay: float = 0.0


S = State()


def visible(user: dict[str, Any], tenant_id: str | None) -> bool:
    return user["role"] == "PlatformAdmin" or (tenant_id is not None and user["tenant_id"] == tenant_id)


def user_view(u: dict[str, Any], viewer: dict[str, Any] | None) -> dict[str, Any]:
    v = dict(u)
    if viewer and viewer["role"] == "Pilot" and viewer["id"] != u["id"]:
        v["email"] = None
    return v


async def publish(entity: str, rid: str, tenant_id: str | None, event: str,
                  data: dict[str, Any]) -> int:
    S.event_seq += 1
    change = {"type": "change", "sequence": len(S.changes) + 1, "entity": entity, "id": rid,
              "tenant_id": tenant_id, "event": event, "data": data}
    S.changes.append(change)
    for ws, info in list(S.sockets.items()):
        if info.get("live"):
            await send_change(ws, info, change)
    return S.event_seq


async def send_change(ws: web.WebSocketResponse, info: dict[str, Any], change: dict[str, Any]) -> None:
    user = S.users.get(info["user_id"])
    if not user or not visible(user, change["tenant_id"]):
        if not (user and change["entity"] == "tenant" and user["role"] == "PlatformAdmin"):
            return
    msg = dict(change)
    if change["entity"] == "user":
        msg["data"] = user_view(change["data"], user)
    if change["entity"] == "apikey" and user["role"] == "Pilot" and change["data"]["user_id"] != user["id"]:
        return
    try:
        await ws.send_str(json.dumps(msg))
    except ConnectionError:
        pass


def principal(request: web.Request) -> dict[str, Any] | None:
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else request.headers.get("X-API-Key", "")
    uid = S.sessions.get(token)
    return S.users.get(uid) if uid else None


def page(items: list[dict[str, Any]], request: web.Request, key: str) -> web.Response:
    items = sorted(items, key=lambda x: (x[key], x["id"]), reverse=True)
    limit = min(200, max(1, int(request.query.get("limit", "50"))))
    cursor = request.query.get("cursor")
    if cursor:
        last = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        items = [i for i in items if (i[key], i["id"]) < (last[0], last[1])]
    chunk = items[:limit]
    nxt = None
    if len(items) > limit:
        nxt = base64.urlsafe_b64encode(json.dumps([chunk[-1][key], chunk[-1]["id"]]).encode()).decode()
    return web.json_response({"items": chunk, "next_cursor": nxt})


def written(data: Any, seq: int, status: int = 200) -> web.Response:
    if data is None:
        return web.Response(status=204, headers={"Albatross-Sequence": str(seq)})
    return web.json_response(data, status=status, headers={"Albatross-Sequence": str(seq)})


@web.middleware
async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    if S.delay:
        await asyncio.sleep(S.delay)
    if request.path in ("/api/auth/login", "/api/setup", "/api/ws"):
        return await handler(request)
    me = principal(request)
    if me is None:
        return problem(401, "unauthorized", "Unauthorized")
    allowed = {"/api/me", "/api/auth/logout", f"/api/users/{me['id']}/password"}
    if me["must_change_password"] and request.path not in allowed:
        return problem(403, "password_change_required", "Password change required")
    request["me"] = me
    return await handler(request)


routes = web.RouteTableDef()


@routes.get("/api/setup")
async def setup(_: web.Request) -> web.Response:
    return web.json_response({"initialized": True})


@routes.post("/api/auth/login")
async def login(request: web.Request) -> web.Response:
    body = await request.json()
    email = str(body.get("email", "")).lower()
    user = next((u for u in S.users.values() if u["email"] == email), None)
    if not user or S.passwords.get(user["id"]) != body.get("password"):
        return problem(401, "unauthorized", "Unauthorized", "Wrong email or password.")
    token = secrets.token_urlsafe(24)
    S.sessions[token] = user["id"]
    expires = (datetime.now(UTC) + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return web.json_response({"token": token, "expires_at": expires,
                              "must_change_password": user["must_change_password"], "user": user})


@routes.post("/api/auth/logout")
async def logout(request: web.Request) -> web.Response:
    token = request.headers.get("Authorization", "")[7:]
    S.sessions.pop(token, None)
    return web.Response(status=204)


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    return web.json_response(request["me"])


@routes.get("/api/tenants")
async def tenants(request: web.Request) -> web.Response:
    me = request["me"]
    return page([t for t in S.tenants.values() if visible(me, t["id"])], request, "created_at")


@routes.post("/api/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    me = request["me"]
    if me["role"] != "PlatformAdmin":
        return problem(403, "forbidden", "Forbidden")
    body = await request.json()
    errors = []
    if not str(body.get("name", "")).strip():
        errors.append({"field": "name", "message": "must not be blank"})
    if not re.fullmatch(r"[A-Z]{3}", str(body.get("icao", ""))):
        errors.append({"field": "icao", "message": "must be 3 letters A-Z"})
    if body.get("iata") is not None and not re.fullmatch(r"[A-Z0-9]{2}", str(body["iata"])):
        errors.append({"field": "iata", "message": "must be 2 letters or digits"})
    if errors:
        return problem(422, "validation_failed", "Validation failed", errors=errors)
    if any(t["icao"] == body["icao"] for t in S.tenants.values()):
        return problem(409, "icao_taken", "ICAO code taken")
    t = {"id": new_id(), "name": body["name"].strip(), "icao": body["icao"], "iata": body.get("iata"),
         "created_at": now(), "pilot_count": 0}
    S.tenants[t["id"]] = t
    seq = await publish("tenant", t["id"], t["id"], "TenantCreated", t)
    return written(t, seq, 201)


@routes.get("/api/users")
async def users(request: web.Request) -> web.Response:
    me = request["me"]
    q = request.query
    items = [user_view(u, me) for u in S.users.values()
             if (me["role"] == "PlatformAdmin" or u["tenant_id"] == me["tenant_id"])
             and (not q.get("role") or u["role"] == q["role"])
             and (not q.get("tenant_id") or u["tenant_id"] == q["tenant_id"])]
    return page(items, request, "created_at")


@routes.get("/api/users/{id}")
async def get_user(request: web.Request) -> web.Response:
    me = request["me"]
    u = S.users.get(request.match_info["id"])
    if not u or not (me["role"] == "PlatformAdmin" or u["tenant_id"] == me["tenant_id"]):
        return problem(404, "not_found", "Not found")
    return web.json_response(user_view(u, me))


def add_user(email: str, name: str, role: str, tenant_id: str | None, password: str,
             must_change: bool = False) -> dict[str, Any]:
    u = {"id": new_id(), "email": email.lower(), "display_name": name, "role": role,
         "tenant_id": tenant_id, "created_at": now(), "must_change_password": must_change,
         "flight_count": 0, "flight_minutes": 0}
    S.users[u["id"]] = u
    S.passwords[u["id"]] = password
    if role == "Pilot" and tenant_id:
        S.tenants[tenant_id]["pilot_count"] += 1
    return u


@routes.post("/api/users")
async def register(request: web.Request) -> web.Response:
    me = request["me"]
    if me["role"] == "Pilot":
        return problem(403, "forbidden", "Forbidden")
    body = await request.json()
    errors = []
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(body.get("email", ""))):
        errors.append({"field": "email", "message": "must be a valid email address"})
    if not str(body.get("display_name", "")).strip():
        errors.append({"field": "display_name", "message": "must not be blank"})
    if not 12 <= len(str(body.get("password", ""))) <= 256:
        errors.append({"field": "password", "message": "must be 12 to 256 characters long"})
    if errors:
        return problem(422, "validation_failed", "Validation failed", errors=errors)
    if any(u["email"] == body["email"].lower() for u in S.users.values()):
        return problem(409, "email_taken", "Email taken")
    tenant_id = body.get("tenant_id") if me["role"] == "PlatformAdmin" else me["tenant_id"]
    u = add_user(body["email"], body["display_name"].strip(), body["role"], tenant_id,
                 body["password"], bool(body.get("must_change_password")))
    seq = await publish("user", u["id"], tenant_id, "UserRegistered", u)
    if tenant_id and u["role"] == "Pilot":
        await publish("tenant", tenant_id, tenant_id, "UserRegistered", S.tenants[tenant_id])
    return written(u, seq, 201)


@routes.post("/api/users/{id}/password")
async def password(request: web.Request) -> web.Response:
    me = request["me"]
    body = await request.json()
    if request.match_info["id"] != me["id"]:
        return problem(404, "not_found", "Not found")
    if S.passwords.get(me["id"]) != body.get("current_password"):
        return problem(422, "validation_failed", "Validation failed",
                       errors=[{"field": "current_password", "message": "is not your current password"}])
    if not 12 <= len(str(body.get("new_password", ""))) <= 256:
        return problem(422, "validation_failed", "Validation failed",
                       errors=[{"field": "new_password", "message": "must be 12 to 256 characters long"}])
    S.passwords[me["id"]] = body["new_password"]
    me["must_change_password"] = False
    seq = await publish("user", me["id"], me["tenant_id"], "PasswordChanged", me)
    return written(None, seq)


@routes.get("/api/users/{id}/apikeys")
async def list_keys(request: web.Request) -> web.Response:
    uid = request.match_info["id"]
    return page([{k: v for k, v in key.items() if k != "user_id"} for key in S.apikeys.values()
                 if key["user_id"] == uid], request, "created_at")


@routes.post("/api/users/{id}/apikeys")
async def create_key(request: web.Request) -> web.Response:
    uid = request.match_info["id"]
    body = await request.json()
    if not str(body.get("name", "")).strip():
        return problem(422, "validation_failed", "Validation failed",
                       errors=[{"field": "name", "message": "must not be blank"}])
    secret = "alb_" + secrets.token_urlsafe(30)
    key = {"id": new_id(), "user_id": uid, "name": body["name"].strip(), "prefix": secret[:10],
           "created_at": now(), "last_used_at": None, "revoked_at": None}
    S.apikeys[key["id"]] = key
    S.sessions[secret] = uid
    seq = await publish("apikey", key["id"], S.users[uid]["tenant_id"], "ApiKeyCreated", key)
    out = {k: key[k] for k in ("id", "name", "prefix", "created_at")} | {"key": secret}
    return written(out, seq, 201)


@routes.delete("/api/users/{id}/apikeys/{key}")
async def revoke_key(request: web.Request) -> web.Response:
    key = S.apikeys.get(request.match_info["key"])
    if not key:
        return problem(404, "not_found", "Not found")
    key["revoked_at"] = now()
    seq = await publish("apikey", key["id"], S.users[key["user_id"]]["tenant_id"], "ApiKeyRevoked", key)
    return written(None, seq)


PIREP_RULES = {
    "flight_number": (r"[A-Z0-9]{1,10}", "must be 1 to 10 letters or digits"),
    "departure": (r"[A-Z]{4}", "must be a 4-letter ICAO airport code"),
    "arrival": (r"[A-Z]{4}", "must be a 4-letter ICAO airport code"),
}


@routes.post("/api/pireps")
async def submit(request: web.Request) -> web.Response:
    me = request["me"]
    if me["role"] == "PlatformAdmin":
        return problem(403, "forbidden", "Forbidden")
    body = await request.json()
    errors = [{"field": f, "message": m} for f, (rx, m) in PIREP_RULES.items()
              if not re.fullmatch(rx, str(body.get(f, "")))]
    if body.get("block_on_at", "") <= body.get("block_off_at", ""):
        errors.append({"field": "block_on_at", "message": "must be after block_off_at"})
    if errors:
        return problem(422, "validation_failed", "Validation failed", errors=errors)
    p = {k: body.get(k) for k in ("flight_number", "departure", "arrival", "aircraft_type",
                                   "aircraft_registration", "block_off_at", "block_on_at",
                                   "flight_time_minutes", "fuel_used_kg", "distance_nm",
                                   "landing_rate_fpm", "route", "remarks")}
    p |= {"id": new_id(), "tenant_id": me["tenant_id"], "pilot_id": me["id"], "status": "pending",
          "source": body.get("source", "manual"), "submitted_at": now(), "reviewed_at": None,
          "reviewed_by": None, "review_comment": None, "version": 1}
    S.pireps[p["id"]] = p
    S.history[p["id"]] = [{"sequence": S.event_seq + 1, "type": "PirepSubmitted",
                           "occurred_at": p["submitted_at"], "actor_id": me["id"], "data": {}}]
    seq = await publish("pirep", p["id"], p["tenant_id"], "PirepSubmitted", p)
    return written(p, seq, 201)


@routes.get("/api/pireps")
async def pireps(request: web.Request) -> web.Response:
    me = request["me"]
    q = request.query
    items = [p for p in S.pireps.values() if visible(me, p["tenant_id"])
             and all(not q.get(k) or p[k] == q[k] for k in ("status", "pilot_id", "tenant_id"))]
    return page(items, request, "submitted_at")


@routes.get("/api/pireps/{id}")
async def get_pirep(request: web.Request) -> web.Response:
    p = S.pireps.get(request.match_info["id"])
    if not p or not visible(request["me"], p["tenant_id"]):
        return problem(404, "not_found", "Not found")
    return web.json_response(p)


@routes.get("/api/pireps/{id}/history")
async def history(request: web.Request) -> web.Response:
    p = S.pireps.get(request.match_info["id"])
    if not p or not visible(request["me"], p["tenant_id"]):
        return problem(404, "not_found", "Not found")
    return web.json_response({"items": S.history[p["id"]]})


@routes.post("/api/pireps/{id}/review")
async def review(request: web.Request) -> web.Response:
    me = request["me"]
    p = S.pireps.get(request.match_info["id"])
    if not p or not visible(me, p["tenant_id"]):
        return problem(404, "not_found", "Not found")
    if me["role"] == "Pilot":
        return problem(403, "forbidden", "Forbidden")
    if p["status"] != "pending":
        return problem(409, "invalid_state", "Invalid state", "This PIREP is already reviewed.")
    body = await request.json()
    accept = body.get("decision") == "accept"
    p.update(status="accepted" if accept else "rejected", reviewed_at=now(), reviewed_by=me["id"],
             review_comment=body.get("comment"), version=p["version"] + 1)
    event = "PirepAccepted" if accept else "PirepRejected"
    S.history[p["id"]].append({"sequence": S.event_seq + 1, "type": event, "occurred_at": now(),
                               "actor_id": me["id"], "data": {"comment": body.get("comment")}})
    seq = await publish("pirep", p["id"], p["tenant_id"], event, p)
    if accept:
        pilot = S.users[p["pilot_id"]]
        pilot["flight_count"] += 1
        pilot["flight_minutes"] += int(p["flight_time_minutes"] or 0)
        await publish("user", pilot["id"], pilot["tenant_id"], event, pilot)
    return written(p, seq)


@routes.get("/api/ws")
async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    info: dict[str, Any] = {}
    try:
        first = await asyncio.wait_for(ws.receive(), 5)
        msg = json.loads(first.data) if first.type == WSMsgType.TEXT else {}
        uid = S.sessions.get(msg.get("token", "")) if msg.get("type") == "auth" else None
        if not uid:
            await ws.close(code=4401)
            return ws
        info["user_id"] = uid
        S.sockets[ws] = info
        await ws.send_str(json.dumps({"type": "ready", "user_id": uid, "sequence": len(S.changes)}))
        async for m in ws:
            if m.type != WSMsgType.TEXT:
                continue
            data = json.loads(m.data)
            if data.get("type") == "resume":
                for change in S.changes[int(data.get("after", 0)):]:
                    await send_change(ws, info, change)
                info["live"] = True
    except TimeoutError:
        await ws.close(code=4401)
    finally:
        S.sockets.pop(ws, None)
    return ws


async def spa(request: web.Request) -> web.StreamResponse:
    path = (DIST / request.path.lstrip("/")).resolve()
    if path.is_file() and DIST in path.parents:
        headers = {"Cache-Control": "public, max-age=31536000, immutable"} if "/assets/" in request.path else {}
        return web.FileResponse(path, headers=headers)
    return web.FileResponse(DIST / "index.html", headers={"Cache-Control": "no-cache"})


def seed(count: int) -> None:
    add_user("admin@albatross.local", "Platform Admin", "PlatformAdmin", None, "admin-password-1")
    t = {"id": new_id(), "name": "Speedbird Virtual", "icao": "SBV", "iata": "SB",
         "created_at": now(), "pilot_count": 0}
    S.tenants[t["id"]] = t
    add_user("ops@sbv.example", "Olivia Ops", "TenantAdmin", t["id"], "password-12345")
    pilots = [add_user(f"pilot{i}@sbv.example", name, "Pilot", t["id"], "password-12345")
              for i, name in enumerate(["Amelia Earhart", "Chuck Yeager", "Jean Batten"])]
    base = datetime.now(UTC) - timedelta(minutes=count * 30 + 120)
    airports = ["EGLL", "LFPG", "EDDF", "EHAM", "LEMD", "LIRF", "KJFK", "EGKK"]
    for i in range(count):
        off = base + timedelta(minutes=30 * i)
        pilot = pilots[i % len(pilots)]
        status = "pending" if i > count - 4 else ("accepted" if i % 5 else "rejected")
        pid = new_id()
        S.pireps[pid] = {
            "id": pid, "tenant_id": t["id"], "pilot_id": pilot["id"], "status": status,
            "flight_number": f"SBV{100 + i}", "departure": airports[i % 8],
            "arrival": airports[(i + 3) % 8], "aircraft_type": "A320",
            "aircraft_registration": "G-EUPT", "block_off_at": off.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "block_on_at": (off + timedelta(minutes=95)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "flight_time_minutes": 80, "fuel_used_kg": 2400.0, "distance_nm": 420.0,
            "landing_rate_fpm": -140.0, "route": None, "remarks": None, "source": "manual",
            "submitted_at": (off + timedelta(minutes=100)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reviewed_at": None, "reviewed_by": None, "review_comment": None, "version": 1}
        S.history[pid] = [{"sequence": i + 1, "type": "PirepSubmitted",
                           "occurred_at": S.pireps[pid]["submitted_at"], "actor_id": pilot["id"],
                           "data": {}}]
        if status == "accepted":
            pilot["flight_count"] += 1
            pilot["flight_minutes"] += 80


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to every API call")
    args = parser.parse_args()
    S.delay = args.delay
    seed(args.seed)
    app = web.Application(middlewares=[middleware])
    app.add_routes(routes)
    app.router.add_get("/{tail:.*}", spa)
    print(f"mock API on http://127.0.0.1:{args.port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
