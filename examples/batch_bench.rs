//! Benchmark: `batch submit` + `batch collect` of N synthetic issues against the loopback fake of
//! the OpenAI Batch API, each collect next to DuckDB's own `read_json` of the same output file in
//! the same run (issue 13: collect ≤ 2× that), submit next to DuckDB copying the same requests
//! (read + write the input JSONL), and the peak RSS of each CLI run (flat = streaming).
//!
//! Run: `cargo build --release && cargo run --release --example batch_bench -- [N…] [--quick]
//! [--submit-only]` (default sizes 10,000 and 50,000; `--quick`: 2,000). The `github-analysis`
//! binary next to this example's folder runs as a child process, so time and RSS are the CLI's
//! alone (from `wait4`); the fake server lives in this process. Prints `BENCH {json}` lines
//! (examples/bench.rs). Uses the `duckdb` crate directly for the references only.

#[path = "../tests/it/fakes/batches/mod.rs"]
mod batches;
// The batch fake shares its keys with the chat fakes.
#[path = "../tests/it/fakes/anthropic/mod.rs"]
mod anthropic;
#[path = "../tests/it/fakes/openai/mod.rs"]
mod openai;
#[path = "../tests/it/fakes/serve.rs"]
mod serve;

#[path = "support/mod.rs"]
mod support;

use std::path::Path;

use std::time::Instant;

use github_analysis::store::{Comment, Issue, Label, Metadata, Store, StoredIssue, User};
use support::{bench_line, binary, timed, Took};

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
            ..Default::default()
        },
        metadata: Metadata::now(),
    }
}

/// Figures of one size.
struct Sized {
    n: u64,
    submit: Took,
    collect: Option<(Took, f64)>,
}

fn bench(bin: &Path, n: u64, submit_only: bool) -> anyhow::Result<Sized> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let store = Store::new(&data);
    store.ensure_dirs()?;
    for i in 1..=n {
        store.write_issue(&synthetic(i))?;
    }
    let sync = timed(bin, &data, &[], &["sync"])?;
    println!(
        "{n}: generated and synced {n} issues (sync {:.1}s)",
        sync.wall
    );

    let fake = batches::FakeBatches::start();
    fake.set_advance(batches::Advance::Manual);
    let env = fake.openai_env();
    let submit = timed(
        bin,
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
    let job: serde_json::Value = serde_json::from_str(&submit.stdout)?;
    let jid = job["job_id"].as_str().unwrap_or_default().to_string();
    let inputs: Vec<String> = std::fs::read_dir(data.join("batch/input"))?
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    let input_bytes: u64 = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{n}: submit  {:>7.2}s  peak RSS {:>7.1} MB  input {:.1} MB in {} part(s)",
        submit.wall,
        submit.rss_mb,
        input_bytes as f64 / 1e6,
        job["parts"].as_array().map_or(0, Vec::len),
    );
    // Reference for submit: DuckDB reading the same requests and writing them out again.
    let copy = duckdb_secs(&format!(
        "COPY (SELECT * FROM read_json([{}], format = 'newline_delimited', \
         maximum_object_size = 100000000)) TO '{}' (FORMAT json)",
        quoted(&inputs),
        dir.path().join("copy.jsonl").display()
    ))?;
    println!("{n}: duckdb copy of the input JSONL: {copy:.2}s");
    bench_line(
        &format!("batch_submit_{n}"),
        submit.wall,
        copy,
        "DuckDB read_json + COPY of the same input JSONL",
        "keep (flat memory)",
        "s",
    );
    if submit_only {
        return Ok(Sized {
            n,
            submit,
            collect: None,
        });
    }
    fake.finish_all();
    let collect = timed(bin, &data, &env, &["batch", "collect", &jid])?;
    let report: serde_json::Value = serde_json::from_str(&collect.stdout)?;
    anyhow::ensure!(
        report["stored"].as_u64() == Some(n),
        "collect stored {} of {n}",
        report["stored"]
    );
    println!(
        "{n}: collect {:>7.2}s  peak RSS {:>7.1} MB  stored {} failed {}",
        collect.wall, collect.rss_mb, report["stored"], report["failed"]
    );
    // Reference: DuckDB parsing the same output files (no validation, no result files). The
    // answers' text is summed, not just the rows counted: DuckDB drops unused columns from a
    // `count(*)`, so that would time little more than finding the line ends.
    let outputs: Vec<String> = std::fs::read_dir(data.join("batch/output"))?
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    let read = duckdb_secs(&format!(
        "SELECT sum(length(custom_id) + length(c)) FROM (SELECT custom_id, \
         response.body.choices[1].message.content AS c FROM read_json([{}], \
         format = 'newline_delimited', maximum_object_size = 100000000))",
        quoted(&outputs)
    ))?;
    println!("{n}: duckdb read_json of the output: {read:.2}s");
    bench_line(
        &format!("batch_collect_{n}"),
        collect.wall,
        read,
        "DuckDB read_json of the same output file",
        "<= 2x",
        "s",
    );
    Ok(Sized {
        n,
        submit,
        collect: Some((collect, read)),
    })
}

fn quoted(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Seconds DuckDB (in-process, fresh in-memory database) takes for one statement.
fn duckdb_secs(sql: &str) -> anyhow::Result<f64> {
    let conn = duckdb::Connection::open_in_memory()?;
    let t = Instant::now();
    conn.execute_batch(sql)?;
    Ok(t.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let submit_only = args.iter().any(|a| a == "--submit-only");
    let mut sizes: Vec<u64> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        sizes = if quick {
            vec![2_000]
        } else {
            vec![10_000, 50_000]
        };
    }
    let bin = binary()?;
    let mut done = Vec::new();
    for n in sizes {
        done.push(bench(&bin, n, submit_only)?);
    }
    // Memory: the largest size next to the smallest (flat = streaming).
    if let (Some(small), Some(big)) = (done.first(), done.last()) {
        if big.n > small.n {
            bench_line(
                &format!("batch_submit_peak_rss_{}", big.n),
                big.submit.rss_mb,
                small.submit.rss_mb,
                &format!("submit of {} requests", small.n),
                "flat",
                "MB",
            );
            if let (Some((b, _)), Some((s, _))) = (&big.collect, &small.collect) {
                bench_line(
                    &format!("batch_collect_peak_rss_{}", big.n),
                    b.rss_mb,
                    s.rss_mb,
                    &format!("collect of {} requests", small.n),
                    "flat",
                    "MB",
                );
            }
        }
    }
    Ok(())
}
