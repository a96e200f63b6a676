-- Batch queueing (docs/batch.md, "Provider queue limits"): each part's estimated prompt tokens,
-- so the tokens a model has enqueued at the provider can be summed, and the limits learned
-- from the provider's refusals (per provider and model): the enqueued-token budget
-- (OpenAI `token_limit_exceeded`) and the most requests one batch may hold (`too_many_tasks`).

ALTER TABLE batch_parts ADD COLUMN est_tokens BIGINT DEFAULT 0;

CREATE TABLE batch_limits (
    provider         VARCHAR NOT NULL,
    model            VARCHAR NOT NULL,
    enqueued_tokens  BIGINT,
    max_requests     BIGINT,
    source           VARCHAR,
    updated_at       TIMESTAMP,
    PRIMARY KEY (provider, model)
);
