-- Recommendations a person reviews before labels reach GitHub, and the record of every label
-- change `update-labels` made (or would have made, with --dry-run).
--
-- A recommendation is derived from one stored AI result (identified by the md5 of its JSON), so
-- a newer result of the same issue and processor makes a new one: the older one stays for audit
-- (`superseded_by` points to its successor). Label lists are JSON arrays of names.

CREATE SEQUENCE IF NOT EXISTS recommendations_id_seq;
CREATE SEQUENCE IF NOT EXISTS label_changes_id_seq;

CREATE TABLE recommendations (
    id                BIGINT PRIMARY KEY DEFAULT nextval('recommendations_id_seq'),
    issue_id          VARCHAR NOT NULL,      -- 'org/repo#number'
    org               VARCHAR NOT NULL,
    repo              VARCHAR NOT NULL,
    number            BIGINT NOT NULL,
    processor         VARCHAR NOT NULL,
    result_md5        VARCHAR NOT NULL,      -- md5 of ai_results.result this was derived from
    result_created_at TIMESTAMP,
    model             VARCHAR,
    confidence        DOUBLE,                -- the result's overall confidence
    labels_before     JSON NOT NULL,         -- the issue's labels it was made against
    add_labels        JSON NOT NULL,         -- recommended and not on the issue
    remove_labels     JSON NOT NULL,         -- taxonomy labels on the issue judged wrong
    status            VARCHAR NOT NULL,      -- pending | no_change | approved | rejected | needs_modification | applied | superseded
    final_labels      JSON,                  -- the label set a reviewer picked (NULL: as proposed)
    reviewer_notes    VARCHAR,
    reviewed_at       TIMESTAMP,
    applied_at        TIMESTAMP,
    superseded_by     BIGINT,                -- the newer recommendation of the same issue/processor
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    UNIQUE (issue_id, processor, result_md5)
);

-- The labels of a recommendation with the model's confidence and reasoning for each.
CREATE TABLE recommendation_labels (
    recommendation_id BIGINT NOT NULL,
    label             VARCHAR NOT NULL,
    action            VARCHAR NOT NULL,      -- add | remove
    confidence        DOUBLE,
    reasoning         VARCHAR
);

CREATE TABLE label_changes (
    id                BIGINT PRIMARY KEY DEFAULT nextval('label_changes_id_seq'),
    issue_id          VARCHAR NOT NULL,
    recommendation_id BIGINT,
    label             VARCHAR,               -- NULL for a comment
    action            VARCHAR NOT NULL,      -- add | remove | create_label | comment
    labels_before     JSON,                  -- the issue's labels on GitHub just before
    labels_after      JSON,                  -- and after (as GitHub answered)
    http_status       INTEGER,               -- NULL for a dry run or a request never answered
    error             VARCHAR,
    applied_at        TIMESTAMP NOT NULL,
    dry_run           BOOLEAN NOT NULL
);
