-- The read models, the projector's checkpoint, its change outbox and its poison events.
-- Names are unqualified on purpose: the runner sets search_path to the target schema, so the
-- same files build the live schema and the rebuild's shadow schema.
-- Ids sort with COLLATE "C" (byte order), the order keyset cursors assume in every adapter.

CREATE TABLE tenants (
    id          text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    icao        text NOT NULL,
    iata        text,
    created_at  timestamptz NOT NULL,
    pilot_count integer NOT NULL DEFAULT 0
);
CREATE INDEX tenants_keyset ON tenants (created_at DESC, id DESC);

-- No credentials here, ever: hashes live only in the event store's secrets subjects.
CREATE TABLE users (
    id                   text COLLATE "C" PRIMARY KEY,
    email                text NOT NULL,
    display_name         text NOT NULL,
    role                 text NOT NULL CHECK (role IN ('PlatformAdmin', 'TenantAdmin', 'Pilot')),
    tenant_id            text COLLATE "C",
    created_at           timestamptz NOT NULL,
    must_change_password boolean NOT NULL,
    flight_count         integer NOT NULL DEFAULT 0,
    flight_minutes       bigint NOT NULL DEFAULT 0
);
CREATE INDEX users_keyset ON users (created_at DESC, id DESC);
CREATE INDEX users_role_keyset ON users (role, created_at DESC, id DESC);
CREATE INDEX users_tenant_keyset ON users (tenant_id, created_at DESC, id DESC);
CREATE INDEX users_tenant_role_keyset ON users (tenant_id, role, created_at DESC, id DESC);

CREATE TABLE api_keys (
    id           text COLLATE "C" PRIMARY KEY,
    user_id      text COLLATE "C" NOT NULL,
    name         text NOT NULL,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user_keyset ON api_keys (user_id, created_at DESC, id DESC);

CREATE TABLE pireps (
    id                    text COLLATE "C" PRIMARY KEY,
    tenant_id             text COLLATE "C" NOT NULL,
    pilot_id              text COLLATE "C" NOT NULL,
    status                text NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    flight_number         text NOT NULL,
    departure             text NOT NULL,
    arrival               text NOT NULL,
    aircraft_type         text,
    aircraft_registration text,
    block_off_at          timestamptz NOT NULL,
    block_on_at           timestamptz NOT NULL,
    flight_time_minutes   integer NOT NULL,
    fuel_used_kg          double precision,
    distance_nm           double precision,
    landing_rate_fpm      double precision,
    route                 text,
    remarks               text,
    source                text NOT NULL,
    submitted_at          timestamptz NOT NULL,
    reviewed_at           timestamptz,
    reviewed_by           text,
    review_comment        text,
    version               bigint NOT NULL
);
CREATE INDEX pireps_keyset ON pireps (submitted_at DESC, id DESC);
CREATE INDEX pireps_status_keyset ON pireps (status, submitted_at DESC, id DESC);
CREATE INDEX pireps_tenant_keyset ON pireps (tenant_id, submitted_at DESC, id DESC);
CREATE INDEX pireps_tenant_status_keyset ON pireps (tenant_id, status, submitted_at DESC, id DESC);
CREATE INDEX pireps_pilot_keyset ON pireps (pilot_id, submitted_at DESC, id DESC);
CREATE INDEX pireps_pilot_status_keyset ON pireps (pilot_id, status, submitted_at DESC, id DESC);

-- A PIREP's events as the event store holds them, so its history never reads the stream.
CREATE TABLE pirep_history (
    pirep_id    text COLLATE "C" NOT NULL,
    sequence    bigint NOT NULL,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor_id    text,
    data        jsonb NOT NULL,
    PRIMARY KEY (pirep_id, sequence)
);

-- One row: the last event-store sequence these tables reflect. Written in the same
-- transaction as the rows, which is what makes redelivery harmless.
CREATE TABLE projection_checkpoint (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_sequence bigint NOT NULL,
    updated_at    timestamptz NOT NULL
);
INSERT INTO projection_checkpoint (singleton, last_sequence, updated_at) VALUES (true, 0, now());

-- Change messages committed with the rows that caused them, published afterwards in key order.
-- The key (event sequence, ordinal) is deterministic: it is also the Nats-Msg-Id.
CREATE TABLE change_outbox (
    event_sequence bigint NOT NULL,
    ordinal        smallint NOT NULL,
    subject        text NOT NULL,
    payload        bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_sequence, ordinal)
);

CREATE TABLE poison_events (
    sequence    bigint PRIMARY KEY,
    subject     text NOT NULL,
    reason      text NOT NULL,
    payload     bytea,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
