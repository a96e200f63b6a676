-- Collect bookkeeping: per-repository incremental cursors and the REST ETag cache.

-- When each repository was last collected completely, per filter scope. The next run asks GitHub
-- only for issues updated at or after `last_collected_at` (GitHub's server time when that run
-- started, so clock skew between this machine and GitHub cannot lose updates).
CREATE TABLE collect_cursors (
    org               VARCHAR NOT NULL,
    repo              VARCHAR NOT NULL,
    scope             VARCHAR NOT NULL,      -- the filters the run covered, e.g. 'state=all;labels='
    last_collected_at TIMESTAMP NOT NULL,
    issues_collected  BIGINT NOT NULL,       -- issues the run that set the cursor returned
    updated_at        TIMESTAMP NOT NULL,
    PRIMARY KEY (org, repo, scope)
);

-- REST responses fetched before, so the next request can send If-None-Match and get a 304
-- (which costs no rate limit) instead of the whole page again.
CREATE TABLE http_etags (
    url        VARCHAR PRIMARY KEY,
    etag       VARCHAR NOT NULL,
    body       VARCHAR NOT NULL,
    link_next  VARCHAR,                      -- the page's `rel="next"` link, replayed on a 304
    fetched_at TIMESTAMP NOT NULL
);
