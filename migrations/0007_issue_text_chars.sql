-- Each issue's text size in characters (title + body + every comment body), written with the
-- issue, so a dry run's token estimate reads one column instead of joining every selected issue
-- with its comments (docs/benchmarks.md, "process-query: issue selection").

ALTER TABLE issues ADD COLUMN text_chars BIGINT;

UPDATE issues SET text_chars = length(title) + coalesce(length(body), 0);

UPDATE issues SET text_chars = issues.text_chars + c.chars
FROM (SELECT issue_id, sum(length(coalesce(body, ''))) AS chars FROM comments GROUP BY issue_id) c
WHERE issues.id = c.issue_id;
