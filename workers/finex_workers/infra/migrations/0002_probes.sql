-- Canary rows written by probe jobs (finex workers probe): proof that a queue reaches PostgreSQL.
CREATE TABLE IF NOT EXISTS finex_probes (
    probe_id    text PRIMARY KEY,
    queue       text NOT NULL,
    runs        integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
