-- The domain schema: assets with price history, scenarios with evidence, and the impact matrix.
--
-- Every measured number is double precision, exposure included: the matrix is computed in SQL
-- and must equal the pure formulas in finex_workers/formulas.py bit for bit (both are IEEE
-- doubles multiplied in the same order). A relative error of 1e-16 on a risk estimate is far
-- below the model's own uncertainty.
--
-- Bounds such as "< 'Infinity'" are there because float8 accepts NaN and infinities, and PostgreSQL
-- sorts NaN above everything: "x < 'Infinity'" is false for NaN, so it rejects both.
-- docs/formulas.md explains each column's meaning and units.

CREATE TABLE assets (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    symbol            text NOT NULL UNIQUE,
    asset_class       text NOT NULL
        CHECK (asset_class IN ('equity', 'bond', 'commodity', 'fx', 'crypto', 'real_estate')),
    exposure          double precision NOT NULL DEFAULT 0
        CHECK (exposure > '-Infinity' AND exposure < 'Infinity'),
    growth_rate       double precision
        CHECK (growth_rate > '-Infinity' AND growth_rate < 'Infinity'),
    volatility        double precision
        CHECK (volatility >= 0 AND volatility < 'Infinity'),
    growth_updated_at timestamptz
);
COMMENT ON TABLE assets IS 'Positions whose value the scenarios move.';
COMMENT ON COLUMN assets.exposure IS
    'Position value in the reporting currency; negative for shorts.';
COMMENT ON COLUMN assets.growth_rate IS
    'Annualised mean log return of the last window of prices (growth queue).';
COMMENT ON COLUMN assets.volatility IS
    'Annualised RiskMetrics EWMA volatility, lambda 0.94 (growth queue).';

CREATE TABLE asset_prices (
    asset_id    bigint NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    observed_on date NOT NULL,
    price       double precision NOT NULL CHECK (price > 0 AND price < 'Infinity'),
    PRIMARY KEY (asset_id, observed_on)
);
COMMENT ON TABLE asset_prices IS 'Daily closing prices; the primary key serves "last N by date".';

CREATE TABLE scenario_groups (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);
COMMENT ON TABLE scenario_groups IS
    'Mutually exclusive, exhaustive scenarios: their probabilities are renormalised to sum to 1.';

CREATE TABLE scenarios (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                   text NOT NULL UNIQUE,
    group_id               bigint REFERENCES scenario_groups (id) ON DELETE RESTRICT,
    prior_probability      double precision NOT NULL
        CHECK (prior_probability > 0 AND prior_probability < 1),
    probability            double precision NOT NULL
        CHECK (probability >= 0 AND probability <= 1),
    probability_updated_at timestamptz
);
CREATE INDEX scenarios_group_id_idx ON scenarios (group_id) WHERE group_id IS NOT NULL;
COMMENT ON COLUMN scenarios.group_id IS 'NULL: a standalone yes/no scenario.';
COMMENT ON COLUMN scenarios.probability IS
    'Posterior given all evidence (probability queue); starts equal to the prior.';

CREATE TABLE scenario_shocks (
    scenario_id          bigint NOT NULL REFERENCES scenarios (id) ON DELETE CASCADE,
    asset_class          text NOT NULL
        CHECK (asset_class IN ('equity', 'bond', 'commodity', 'fx', 'crypto', 'real_estate')),
    shock                double precision NOT NULL CHECK (shock >= -1 AND shock < 'Infinity'),
    reference_volatility double precision NOT NULL
        CHECK (reference_volatility > 0 AND reference_volatility < 'Infinity'),
    PRIMARY KEY (scenario_id, asset_class)
);
COMMENT ON COLUMN scenario_shocks.shock IS
    'Relative price move if the scenario happens: -0.30 is -30%; -1 is a total loss.';
COMMENT ON COLUMN scenario_shocks.reference_volatility IS
    'Annualised volatility the shock was calibrated for; assets are scaled by theirs / this.';

CREATE TABLE scenario_evidence (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scenario_id      bigint NOT NULL REFERENCES scenarios (id) ON DELETE CASCADE,
    likelihood_ratio double precision NOT NULL
        CHECK (likelihood_ratio > 0 AND likelihood_ratio < 'Infinity'),
    observed_at      timestamptz NOT NULL DEFAULT now(),
    note             text NOT NULL DEFAULT ''
);
CREATE INDEX scenario_evidence_scenario_id_idx ON scenario_evidence (scenario_id);
COMMENT ON COLUMN scenario_evidence.likelihood_ratio IS
    'P(observation | scenario) / P(observation | not scenario); > 1 supports the scenario.';

-- One row per asset x scenario pair. The inputs (shock, vol_scale, probability) are stored next
-- to the result so a reader can see why a cell has its value, and so the upsert can tell whether
-- anything changed.
CREATE TABLE impact_scores (
    asset_id        bigint NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    scenario_id     bigint NOT NULL REFERENCES scenarios (id) ON DELETE CASCADE,
    shock           double precision NOT NULL,
    vol_scale       double precision NOT NULL,
    probability     double precision NOT NULL,
    impact          double precision NOT NULL,
    weighted_impact double precision NOT NULL,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, scenario_id)
);
CREATE INDEX impact_scores_scenario_id_idx ON impact_scores (scenario_id);
COMMENT ON TABLE impact_scores IS
    'impact = exposure * shock * vol_scale; weighted_impact = impact * probability.';
COMMENT ON COLUMN impact_scores.shock IS '0 when the scenario has no shock for the asset class.';
COMMENT ON COLUMN impact_scores.computed_at IS 'Last time a recompute changed this row.';
