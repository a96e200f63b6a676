//! Databases written by other versions: an older schema (with data) is migrated in place and
//! keeps its rows; a newer one is refused with a clear message and left untouched.

use crate::support::{repo_root, Env};
use predicates::prelude::*;
use serde_json::json;

fn migration_files() -> Vec<(u32, String)> {
    let mut files: Vec<(u32, String)> = std::fs::read_dir(repo_root().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .map(|n| (n[..4].parse().unwrap(), n))
        .collect();
    files.sort();
    files
}

/// A database as the first release wrote it: migration 0001 only, with an issue, a comment, a
/// result and a batch job with one part.
fn first_release_db(env: &Env) -> std::path::PathBuf {
    std::fs::create_dir_all(env.data()).unwrap();
    let path = env.db_file();
    let conn = duckdb::Connection::open(&path).unwrap();
    let initial = std::fs::read_to_string(repo_root().join("migrations/0001_initial.sql")).unwrap();
    conn.execute_batch(&initial).unwrap();
    conn.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
                                         applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp);
         INSERT INTO schema_migrations (version, name) VALUES (1, 'initial');
         INSERT INTO issues (id, org, repo, number, title, state, comments_count, labels_count, file_path)
           VALUES ('acme/app#7', 'acme', 'app', 7, 'Old issue', 'open', 1, 0, 'issues/acme_app_issue_7.json');
         INSERT INTO comments (id, issue_id, body) VALUES (70, 'acme/app#7', 'kept');
         INSERT INTO ai_results (issue_id, processor, model, provider, mode, result, created_at)
           VALUES ('acme/app#7', 'product-labeling', 'rules', 'rules', 'realtime', '{}', now());
         INSERT INTO batch_jobs (job_id, provider, processor, model, status, created_at)
           VALUES ('job-1', 'local', 'product-labeling', 'rules', 'collected', now());
         INSERT INTO batch_parts (job_id, part, status, request_count, bytes, created_at)
           VALUES ('job-1', 0, 'collected', 1, 100, now());",
    )
    .unwrap();
    path
}

#[test]
fn an_older_database_with_data_is_migrated_and_keeps_its_rows() {
    let env = Env::new();
    first_release_db(&env);
    // A read-only command migrates first (then reads).
    let rows = env.json(&[
        "query",
        "sql",
        "SELECT (SELECT title FROM issues) AS title, (SELECT body FROM comments) AS body,
                (SELECT count(*) FROM ai_results) AS results,
                (SELECT completed_count FROM batch_parts) AS part_completed,
                (SELECT text_chars FROM issues) AS text_chars",
    ]);
    // text_chars (migration 0007) is filled from the rows already there: "Old issue" + "kept".
    assert_eq!(
        rows[0],
        json!({"title": "Old issue", "body": "kept", "results": 1, "part_completed": 0,
               "text_chars": 13})
    );
    let versions: Vec<u64> = env
        .rows("SELECT version FROM schema_migrations ORDER BY version")
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = migration_files()
        .iter()
        .map(|(v, _)| u64::from(*v))
        .collect();
    assert_eq!(versions, expected);
    // Tables of later migrations exist and work.
    assert_eq!(env.scalar("SELECT count(*) FROM collect_cursors"), 0);
    assert_eq!(env.json(&["status"])["database"]["issues"], 1);
}

#[test]
fn a_newer_database_is_refused_clearly_and_left_alone() {
    let env = Env::new();
    let path = first_release_db(&env);
    let future = migration_files().last().unwrap().0 + 1;
    {
        let conn = duckdb::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, 'from_the_future')",
            [future],
        )
        .unwrap();
    }
    let message = format!(
        "error: database {}: the database was written by a newer github-analysis (schema version {future}",
        path.display()
    );
    for args in [&["status"][..], &["sync"], &["query", "sql", "SELECT 1"]] {
        env.cmd()
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::starts_with(message.as_str()))
            .stderr(predicate::str::contains("upgrade github-analysis"));
    }
    // Nothing was migrated: migration 0002's table was never created.
    let conn = duckdb::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'collect_cursors'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}
