-- Label quality: every `evaluate` run (quality over time is a query), and every `train` of the
-- offline `local` model (its weights live in a file under the data directory; this row says
-- what it was trained on). See docs/quality.md.

CREATE SEQUENCE IF NOT EXISTS evaluations_id_seq;
CREATE SEQUENCE IF NOT EXISTS trained_models_id_seq;

CREATE TABLE evaluations (
    id               BIGINT PRIMARY KEY DEFAULT nextval('evaluations_id_seq'),
    created_at       TIMESTAMP NOT NULL,
    processor        VARCHAR NOT NULL,
    model            VARCHAR NOT NULL,        -- the results' model, or '*' for all of them
    taxonomy_name    VARCHAR NOT NULL,
    taxonomy_version VARCHAR NOT NULL,
    taxonomy_sha256  VARCHAR NOT NULL,
    scope            VARCHAR,                 -- org/repo and dates the run was limited to
    issue_count      BIGINT NOT NULL,
    macro_f1         DOUBLE,
    micro_f1         DOUBLE,
    coverage         DOUBLE,
    ece              DOUBLE,
    metrics          JSON NOT NULL            -- the whole report (`evaluate --format json`)
);

CREATE TABLE trained_models (
    id                BIGINT PRIMARY KEY DEFAULT nextval('trained_models_id_seq'),
    created_at        TIMESTAMP NOT NULL,
    processor         VARCHAR NOT NULL,
    taxonomy_name     VARCHAR NOT NULL,
    taxonomy_version  VARCHAR NOT NULL,
    taxonomy_sha256   VARCHAR NOT NULL,
    file_path         VARCHAR NOT NULL,       -- relative to the data directory
    training_query    VARCHAR NOT NULL,       -- the SQL and parameters that selected the issues
    training_issues   BIGINT NOT NULL,
    training_ids      JSON NOT NULL,          -- array of issue ids the model learnt from
    metrics           JSON NOT NULL           -- held-out metrics measured at training time
);
