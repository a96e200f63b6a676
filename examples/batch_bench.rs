//! Benchmark: `batch submit` + `batch collect` of N synthetic issues (default 50,000) against the
//! loopback fake of the OpenAI Batch API: JSONL build throughput, peak RSS of the CLI process
//! (flat = streaming), and collect time next to DuckDB's own `read_json` over the same output.
//!
//! Run: `cargo build && cargo run --example batch_bench -- [N] [--submit-only]` (it runs the `github-analysis`
//! binary next to this example's folder as a child process, so RSS is the CLI's alone; the fake
//! server lives in this process). Uses the `duckdb` crate directly for the baseline only.

#[path = "../tests/it/fakes/batches/mod.rs"]
mod batches;
// The batch fake shares its keys with the chat fakes.
#[path = "../tests/it/fakes/anthropic/mod.rs"]
mod anthropic;
#[path = "../tests/it/fakes/openai/mod.rs"]
mod openai;
#[path = "../tests/it/fakes/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use github_analysis::store::{Comment, Issue, Label, Metadata, Store, StoredIssue, User};

fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    let bin = dir.join("github-analysis");
    anyhow::ensure!(
        bin.is_file(),
        "build the binary first: {} is missing",
        bin.display()
    );
    Ok(bin)
}

fn synthetic(i: u64) -> StoredIssue {
    let products = ["kots", "troubleshoot", "embedded-cluster", "kurl", "sdk"];
    let p = products[(i % products.len() as u64) as usize];
    StoredIssue {
        org: "bench".into(),
        repo: "batch".into(),
        issue: Issue {
            number: i,
            title: format!("{p}: install fails on node {i}"),
            body: Some(format!(
                "Running the {p} installer on a fresh cluster stops with an error.\n\n{}",
                "Logs show the pod restarting and the admin console timing out. ".repeat(12)
            )),
            state: "open".into(),
            labels: vec![Label {
                name: "bug".into(),
                color: Some("d73a4a".into()),
                description: None,
            }],
            user: Some(User {
                login: "reporter".into(),
                id: Some(1),
            }),
            comments: (0..2)
                .map(|c| Comment {
                    id: (i * 10 + c) as i64,
                    user: Some(User {
                        login: "helper".into(),
                        id: Some(2),
                    }),
                    body: Some(format!(
                        "Does {p} {c} still fail after restarting the node?"
                    )),
                    created_at: Some("2024-05-01T10:00:00Z".into()),
                    updated_at: Some("2024-05-01T10:00:00Z".into()),
                })
                .collect(),
            created_at: Some("2024-05-01T09:00:00Z".into()),
            updated_at: Some("2024-05-02T09:00:00Z".into()),
            attachments: vec![],
            id: None,
            html_url: None,
            closed_at: None,
            comment_count: None,
        },
        metadata: Metadata::now(),
    }
}

/// Runs the CLI under `/usr/bin/time`, returning (stdout, seconds, peak RSS in MB).
fn timed(
    bin: &Path,
    data: &Path,
    env: &[(&str, String)],
    args: &[&str],
) -> anyhow::Result<(String, f64, f64)> {
    let stats = data.with_extension("time");
    let mut c = Command::new("/usr/bin/time");
    c.arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&stats)
        .arg(bin)
        .args(args);
    c.env("GITHUB_ANALYSIS_DATA_DIR", data)
        .args(["--format", "json", "-q"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = std::fs::read_to_string(&stats)?;
    let mut it = s.split_whitespace();
    let secs: f64 = it.next().unwrap_or("0").parse()?;
    let kb: f64 = it.next().unwrap_or("0").parse()?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        secs,
        kb / 1024.0,
    ))
}

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let submit_only = std::env::args().any(|a| a == "--submit-only");
    let bin = binary()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let store = Store::new(&data);
    store.ensure_dirs()?;
    for i in 1..=n {
        store.write_issue(&synthetic(i))?;
    }
    let (_, secs, _) = timed(&bin, &data, &[], &["sync"])?;
    println!("generated and synced {n} issues (sync {secs:.1}s)");

    let fake = batches::FakeBatches::start();
    fake.set_advance(batches::Advance::Manual);
    let env = fake.openai_env();
    let (out, secs, rss) = timed(
        &bin,
        &data,
        &env,
        &[
            "batch",
            "submit",
            "product-labeling",
            "--org",
            "bench",
            "--model",
            "openai:gpt-4o-mini",
        ],
    )?;
    let job: serde_json::Value = serde_json::from_str(&out)?;
    let jid = job["job_id"].as_str().unwrap_or_default().to_string();
    let input_bytes: u64 = std::fs::read_dir(data.join("batch/input"))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "submit:  {secs:>7.2}s  peak RSS {rss:>7.1} MB  input {:.1} MB in {} part(s) → {:.1} MB/s end to end",
        input_bytes as f64 / 1e6,
        job["parts"].as_array().map_or(0, Vec::len),
        input_bytes as f64 / 1e6 / secs.max(1e-9)
    );
    if submit_only {
        return Ok(());
    }
    fake.finish_all();
    let (out, secs, rss) = timed(&bin, &data, &env, &["batch", "collect", &jid])?;
    let report: serde_json::Value = serde_json::from_str(&out)?;
    println!(
        "collect: {secs:>7.2}s  peak RSS {rss:>7.1} MB  stored {} failed {}",
        report["stored"], report["failed"]
    );
    // Baseline: DuckDB parsing the same output files (no validation, no result files).
    let outputs: Vec<String> = std::fs::read_dir(data.join("batch/output"))?
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    let conn = duckdb::Connection::open_in_memory()?;
    let t = Instant::now();
    let list = outputs
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM (SELECT custom_id, response.body.choices[1].message.content AS c \
             FROM read_json([{list}], format = 'newline_delimited', maximum_object_size = 100000000))"
        ),
        [],
        |r| r.get(0),
    )?;
    println!(
        "duckdb read_json of the output: {:.2}s ({rows} lines)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
