-- Training (product.md §4.3): training organisations and their sessions, and the registrations
-- of habilitation files on them. Files live in their territory; the index below says where,
-- with the person's name and address, so that national steps (training, Pix, charter) can find
-- them without searching 101 schemas. A session's seats are counted in `seats_taken`, moved in
-- the registration's own transaction under `seats_taken < capacity`: never overbooked.

CREATE TABLE habilitation_file_index (
    file_id          uuid PRIMARY KEY,
    departement_code text NOT NULL REFERENCES departements (code),
    structure_id     uuid NOT NULL,
    email            text NOT NULL CHECK (email = lower(email)),
    display_name     text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX habilitation_file_index_email ON habilitation_file_index (email);
CREATE INDEX habilitation_file_index_structure ON habilitation_file_index (structure_id);

CREATE TABLE training_organisations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE training_sessions (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES training_organisations (id),
    title           text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    first_day       date NOT NULL,
    second_day      date CHECK (second_day IS NULL OR second_day > first_day),
    mode            text NOT NULL CHECK (mode IN ('in_person', 'remote')),
    address         text,
    region_code     text NOT NULL REFERENCES regions (code),
    capacity        integer NOT NULL CHECK (capacity BETWEEN 1 AND 200),
    seats_taken     integer NOT NULL DEFAULT 0,
    cancelled_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      uuid REFERENCES professionals (id),
    CHECK (seats_taken BETWEEN 0 AND capacity),
    CHECK ((mode = 'in_person') = (address IS NOT NULL AND length(btrim(address)) > 0))
);
CREATE INDEX training_sessions_upcoming ON training_sessions (first_day) WHERE cancelled_at IS NULL;

CREATE TABLE training_registrations (
    id              uuid PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES training_sessions (id),
    file_id         uuid NOT NULL REFERENCES habilitation_file_index (file_id),
    status          text NOT NULL CHECK (status IN ('registered', 'waiting', 'cancelled', 'attended', 'absent')),
    registered_by   uuid,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    reminded_at     timestamptz,
    attendance_at   timestamptz,
    attendance_by   uuid,
    cancelled_at    timestamptz
);
-- One live registration (or place on a waiting list) per file at a time.
CREATE UNIQUE INDEX training_registrations_one_live ON training_registrations (file_id)
    WHERE status IN ('registered', 'waiting', 'attended');
CREATE INDEX training_registrations_session ON training_registrations (session_id, status, created_at);
