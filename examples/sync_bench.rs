//! Benchmark: `sync` of N synthetic StoredIssues (default 50,000, 5 comments each) against
//! DuckDB's own `read_json` ingest of the same files into equivalent tables, in the same run.
//!
//! Run: `cargo run --release --example sync_bench -- [N] [COMMENTS_PER_ISSUE]`
//! (a debug build measures unoptimised DuckDB and Rust, which says nothing about real use).
//! This program uses the `duckdb` crate directly for the baseline only; the product code keeps
//! DuckDB inside `src/db/`.

use std::path::Path;
use std::time::Instant;

use github_analysis::db::Db;
use github_analysis::store::{Comment, Issue, Label, Metadata, Store, StoredIssue, User};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let per: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path().join("data"));
    store.ensure_dirs()?;

    let t = Instant::now();
    let mut bytes = 0u64;
    for i in 1..=n {
        let issue = synthetic(i, per);
        let rel = Store::issue_rel_path(&issue.org, &issue.repo, i)?;
        let body = serde_json::to_vec_pretty(&issue)?;
        bytes += body.len() as u64;
        // Plain writes: set-up time is not what is measured.
        std::fs::write(store.abs(&rel), body)?;
    }
    println!(
        "generated {n} issues x {per} comments: {:.1} MB in {:.1}s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // 1. Our sync: stat, read, hash, parse in parallel, Appender bulk load with ledger.
    let t = Instant::now();
    let mut db = Db::open(
        &dir.path().join("ours.duckdb"),
        std::time::Duration::from_secs(5),
    )?;
    let report =
        github_analysis::ingest::sync(&store, &mut db, false, &indicatif::ProgressBar::hidden())?;
    let ours = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.added as u64 == n && report.failed.is_empty(),
        "sync: {report:?}"
    );
    let c = db.counts()?;
    println!(
        "sync:              {ours:>7.2}s  ({} issues, {} labels, {} comments)",
        c.issues, c.labels, c.comments
    );
    drop(db);

    // 2. Second sync with nothing changed (stat only).
    let t = Instant::now();
    let mut db = Db::open(
        &dir.path().join("ours.duckdb"),
        std::time::Duration::from_secs(5),
    )?;
    let again =
        github_analysis::ingest::sync(&store, &mut db, false, &indicatif::ProgressBar::hidden())?;
    println!(
        "sync (unchanged):  {:>7.2}s  ({} unchanged)",
        t.elapsed().as_secs_f64(),
        again.unchanged
    );
    drop(db);

    // 3. DuckDB's own ingest of the same files into the same three tables. The schema is given,
    //    so DuckDB spends no time sampling files to detect it (its fastest configuration).
    let t = Instant::now();
    let native = native_ingest(&dir.path().join("native.duckdb"), &store.issues_dir())?;
    let theirs = t.elapsed().as_secs_f64();
    println!(
        "duckdb read_json:  {theirs:>7.2}s  ({} issues, {} labels, {} comments)",
        native.0, native.1, native.2
    );
    anyhow::ensure!(
        native == (c.issues, c.labels, c.comments),
        "row counts differ: ours {:?}, read_json {native:?}",
        (c.issues, c.labels, c.comments)
    );
    println!(
        "ratio sync / read_json = {:.2} (target <= 1.5)",
        ours / theirs
    );
    // One machine-readable line per measured row, for `examples/bench.rs`.
    println!(
        "BENCH {}",
        serde_json::json!({
            "name": format!("sync {n} issue files into a fresh DB"),
            "tool": ours, "reference": theirs, "ratio": ours / theirs,
            "reference_name": "DuckDB read_json of the same files",
            "target": "<= 1.5", "unit": "s",
        })
    );
    Ok(())
}

fn native_ingest(db: &Path, issues: &Path) -> anyhow::Result<(i64, i64, i64)> {
    let conn = duckdb::Connection::open(db)?;
    let glob = issues.join("*.json");
    let steps = [
        format!(
            "CREATE TABLE raw AS SELECT * FROM read_json('{}', format = 'unstructured', columns = {{
             org: 'VARCHAR', repo: 'VARCHAR',
             issue: 'STRUCT(number BIGINT, title VARCHAR, body VARCHAR, state VARCHAR,
                 labels STRUCT(name VARCHAR, color VARCHAR, description VARCHAR)[],
                 \"user\" STRUCT(login VARCHAR, id BIGINT),
                 comments STRUCT(id BIGINT, \"user\" STRUCT(login VARCHAR, id BIGINT), body VARCHAR,
                     created_at VARCHAR, updated_at VARCHAR)[],
                 created_at VARCHAR, updated_at VARCHAR)'}})",
            glob.display()
        ),
        "CREATE TABLE issues AS SELECT org || '/' || repo || '#' || issue.number AS id, org, repo,
             issue.number AS number, issue.title AS title, issue.body AS body, issue.state AS state,
             issue.user.login AS author, issue.user.id AS author_id,
             len(issue.comments) AS comments_count, len(issue.labels) AS labels_count,
             issue.created_at::TIMESTAMP AS created_at, issue.updated_at::TIMESTAMP AS updated_at
           FROM raw"
            .to_string(),
        "CREATE TABLE labels AS SELECT org || '/' || repo || '#' || issue.number AS issue_id,
             unnest(issue.labels, recursive := true) FROM raw"
            .to_string(),
        "CREATE TABLE comments AS SELECT org || '/' || repo || '#' || issue.number AS issue_id,
             unnest(issue.comments, recursive := true) FROM raw"
            .to_string(),
    ];
    for (name, sql) in ["read_json", "issues", "labels", "comments"]
        .iter()
        .zip(&steps)
    {
        let t = Instant::now();
        conn.execute_batch(sql)?;
        println!("  duckdb {name:<10} {:>7.2}s", t.elapsed().as_secs_f64());
    }
    let count = |t: &str| -> anyhow::Result<i64> {
        Ok(conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?)
    };
    Ok((count("issues")?, count("labels")?, count("comments")?))
}

fn synthetic(i: u64, per: u64) -> StoredIssue {
    let ts = |d: u64| format!("2024-{:02}-{:02}T10:00:00Z", 1 + d % 12, 1 + d % 28);
    StoredIssue {
        org: "bench-org".into(),
        repo: format!("repo-{}", i % 20),
        issue: Issue {
            number: i,
            title: format!(
                "kotsadm upgrade fails when the support-bundle collector times out #{i}"
            ),
            body: Some(format!(
                "Steps to reproduce:\n1. run `kubectl kots install app-{i}`\n2. open the admin \
                 console\n\nExpected: upgrade succeeds.\nActual: the preflight hangs and the \
                 support bundle never finishes. Logs attached below.\n{}",
                "log line with some detail about the cluster state\n".repeat(8)
            )),
            state: if i.is_multiple_of(3) {
                "closed"
            } else {
                "open"
            }
            .into(),
            labels: (0..(i % 4))
                .map(|l| Label {
                    name: format!("label-{l}"),
                    color: Some("ededed".into()),
                    description: Some("a label".into()),
                })
                .collect(),
            user: Some(User {
                login: format!("user{}", i % 500),
                id: Some((i % 500) as i64),
            }),
            comments: (0..per)
                .map(|c| Comment {
                    id: (i * 1000 + c) as i64,
                    user: Some(User {
                        login: format!("user{}", c),
                        id: Some(c as i64),
                    }),
                    body: Some(format!(
                        "Comment {c}: I can reproduce this on embedded-cluster 1.{c}; the kurl \
                         proxy logs show a timeout. Any workaround?"
                    )),
                    created_at: Some(ts(i + c)),
                    updated_at: Some(ts(i + c + 1)),
                })
                .collect(),
            created_at: Some(ts(i)),
            updated_at: Some(ts(i + 7)),
            attachments: vec![],
            id: Some(1_000_000 + i as i64),
            html_url: Some(format!(
                "https://github.com/bench-org/repo-{}/issues/{i}",
                i % 20
            )),
            closed_at: None,
            comment_count: None,
        },
        metadata: Metadata::now(),
    }
}
