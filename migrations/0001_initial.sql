-- Initial schema: issue content (rebuilt from the JSON files by `sync`), AI results and batch jobs.
-- All timestamps are UTC. DuckDB has no ON DELETE CASCADE: the code deletes children explicitly.

CREATE SEQUENCE IF NOT EXISTS ai_results_id_seq;
CREATE SEQUENCE IF NOT EXISTS ai_recommendations_id_seq;
CREATE SEQUENCE IF NOT EXISTS attachments_id_seq;

CREATE TABLE issues (
    id             VARCHAR PRIMARY KEY,      -- 'org/repo#number'
    org            VARCHAR NOT NULL,
    repo           VARCHAR NOT NULL,
    number         BIGINT NOT NULL,
    github_id      BIGINT,
    title          VARCHAR NOT NULL,
    body           VARCHAR,
    state          VARCHAR NOT NULL,
    author         VARCHAR,
    author_id      BIGINT,
    html_url       VARCHAR,
    comments_count BIGINT NOT NULL,
    labels_count   BIGINT NOT NULL,
    created_at     TIMESTAMP,
    updated_at     TIMESTAMP,
    closed_at      TIMESTAMP,
    collected_at   TIMESTAMP,
    file_path      VARCHAR NOT NULL,         -- relative to the data directory
    UNIQUE (org, repo, number)
);

CREATE TABLE labels (
    issue_id    VARCHAR NOT NULL,
    name        VARCHAR NOT NULL,
    color       VARCHAR,
    description VARCHAR
);

CREATE TABLE comments (
    id         BIGINT NOT NULL,
    issue_id   VARCHAR NOT NULL,
    author     VARCHAR,                      -- NULL for deleted accounts
    author_id  BIGINT,
    body       VARCHAR,
    created_at TIMESTAMP,
    updated_at TIMESTAMP
);

CREATE TABLE attachments (
    id            BIGINT PRIMARY KEY DEFAULT nextval('attachments_id_seq'),
    issue_id      VARCHAR NOT NULL,
    comment_id    BIGINT,
    url           VARCHAR NOT NULL,
    file_path     VARCHAR,
    content_type  VARCHAR,
    size_bytes    BIGINT,
    status        VARCHAR NOT NULL,          -- downloaded | failed | skipped
    error         VARCHAR,
    downloaded_at TIMESTAMP
);

-- What `sync` last loaded from each issue file, to skip unchanged files.
CREATE TABLE issue_files (
    file_path VARCHAR PRIMARY KEY,
    issue_id  VARCHAR NOT NULL,
    size      BIGINT NOT NULL,
    mtime_ns  BIGINT NOT NULL,
    sha256    VARCHAR NOT NULL,
    synced_at TIMESTAMP NOT NULL
);

CREATE TABLE ai_results (
    id                 BIGINT PRIMARY KEY DEFAULT nextval('ai_results_id_seq'),
    issue_id           VARCHAR NOT NULL,
    processor          VARCHAR NOT NULL,
    processor_version  VARCHAR,
    model              VARCHAR NOT NULL,
    provider           VARCHAR NOT NULL,
    mode               VARCHAR NOT NULL,     -- realtime | batch
    confidence         DOUBLE,
    result             JSON NOT NULL,
    prompt_tokens      BIGINT,
    cached_tokens      BIGINT,
    completion_tokens  BIGINT,
    cost_usd           DOUBLE,
    processing_time_ms BIGINT,
    created_at         TIMESTAMP NOT NULL,
    file_path          VARCHAR,
    batch_job_id       VARCHAR,
    UNIQUE (issue_id, processor)
);

CREATE TABLE ai_recommendations (
    id           BIGINT PRIMARY KEY DEFAULT nextval('ai_recommendations_id_seq'),
    issue_id     VARCHAR NOT NULL,
    processor    VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,           -- e.g. 'label'
    value        VARCHAR NOT NULL,           -- e.g. 'product::kots'
    confidence   DOUBLE,
    reasoning    VARCHAR,
    created_at   TIMESTAMP NOT NULL,
    batch_job_id VARCHAR
);

CREATE TABLE batch_jobs (
    job_id          VARCHAR PRIMARY KEY,
    parent_job_id   VARCHAR,                 -- set by `batch retry`
    provider        VARCHAR NOT NULL,        -- openai | anthropic | local
    processor       VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,        -- preparing | submitted | in_progress | completed | failed | expired | cancelling | cancelled | collected
    issues_count    BIGINT NOT NULL DEFAULT 0,
    completed_count BIGINT NOT NULL DEFAULT 0,
    failed_count    BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMP NOT NULL,
    submitted_at    TIMESTAMP,
    completed_at    TIMESTAMP,
    collected_at    TIMESTAMP,
    cost_estimate   DOUBLE,
    cost_actual     DOUBLE,
    selection_query VARCHAR,
    source_command  VARCHAR,
    error_message   VARCHAR,
    metadata        JSON
);

-- One provider batch of a job: jobs over provider caps are split into several parts.
CREATE TABLE batch_parts (
    job_id            VARCHAR NOT NULL,
    part              INTEGER NOT NULL,
    provider_batch_id VARCHAR,
    input_file_id     VARCHAR,
    output_file_id    VARCHAR,
    error_file_id     VARCHAR,
    status            VARCHAR NOT NULL,
    request_count     BIGINT NOT NULL,
    bytes             BIGINT NOT NULL,
    input_path        VARCHAR,
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP,
    PRIMARY KEY (job_id, part)
);

CREATE TABLE batch_items (
    job_id     VARCHAR NOT NULL,
    issue_id   VARCHAR NOT NULL,
    custom_id  VARCHAR NOT NULL,
    part       INTEGER NOT NULL DEFAULT 0,
    status     VARCHAR NOT NULL,             -- preparing | pending | completed | failed | expired | cancelled
    error      VARCHAR,
    updated_at TIMESTAMP,
    PRIMARY KEY (job_id, custom_id)
);
