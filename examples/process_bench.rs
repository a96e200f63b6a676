//! Real-time processing against a fake OpenAI server, two figures:
//!
//! * **Requests-per-minute bound** (short issues, 200 ms latency, 600 requests/minute): the
//!   achieved requests/second as a fraction of the limit, with the default concurrency (and,
//!   without `--quick`, sequentially), and a check that no item is lost.
//! * **Tokens-per-minute bound** (long issues, a TPM limit that binds long before the RPM one):
//!   tokens/minute held as a fraction of the TPM limit — the tokens the fake counted minus its
//!   initial bucket (which any client gets for free), over the run's wall time — and the 429s
//!   (target ≥ 0.9 of the limit, no 429).
//!
//! Each figure is printed as a `BENCH {json}` line (examples/bench.rs collects them).
//!
//! ```text
//! cargo run --release --example process_bench              # documented sizes
//! cargo run --release --example process_bench -- --quick   # smoke sizes
//! cargo run --example process_bench -- --issues 300 --sequential-issues 100 --concurrency 8
//! ```

#[path = "../tests/it/fakes/openai/mod.rs"]
mod openai;
// The fake OpenAI server can also serve batch routes; it names these siblings.
#[path = "../tests/it/fakes/anthropic/mod.rs"]
mod anthropic;
#[path = "../tests/it/fakes/batches/mod.rs"]
mod batches;
#[path = "../tests/it/fakes/serve.rs"]
mod serve;

use std::sync::Arc;
use std::time::Duration;

use github_analysis::ai::http::{HttpClient, RetryPolicy};
use github_analysis::ai::pricing::PriceTable;
use github_analysis::ai::{Endpoint, GenSettings, ModelSpec, Provider, Secret};
use github_analysis::db::{Db, IssueRef, ReadOnlyDb};
use github_analysis::pipeline::Pipeline;
use github_analysis::processors::{Options, Processor};
use github_analysis::realtime::{self, Engine};
use github_analysis::store::{
    Comment, Issue, IssueState, Label, Metadata, Store, StoredIssue, User,
};

const ORG: &str = "benchorg";
const REPO: &str = "bench";

struct Args {
    issues: usize,
    sequential_issues: usize,
    concurrency: usize,
    rpm: u64,
    latency_ms: u64,
    /// Long issues of the tokens-per-minute run (0: skip it).
    tpm_issues: usize,
    tpm: u64,
    /// Seconds of tokens the fake's bucket holds.
    tpm_burst_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        issues: 1000,
        sequential_issues: 1000,
        concurrency: 8,
        rpm: 600,
        latency_ms: 200,
        tpm_issues: 200,
        tpm: 1_200_000,
        tpm_burst_secs: 6,
    };
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = argv.iter().position(|x| x == "--quick") {
        argv.remove(i);
        a.issues = 200;
        a.sequential_issues = 0;
        a.tpm_issues = 60;
    }
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| {
            eprintln!("usage: process_bench [--quick] [--issues N] [--sequential-issues N] [--concurrency N] [--rpm N] [--latency-ms N] [--tpm-issues N] [--tpm N] [--tpm-burst-secs N]");
            std::process::exit(2);
        });
        match pair[0].as_str() {
            "--issues" => a.issues = value as usize,
            "--sequential-issues" => a.sequential_issues = value as usize,
            "--concurrency" => a.concurrency = value as usize,
            "--rpm" => a.rpm = value,
            "--latency-ms" => a.latency_ms = value,
            "--tpm-issues" => a.tpm_issues = value as usize,
            "--tpm" => a.tpm = value,
            "--tpm-burst-secs" => a.tpm_burst_secs = value,
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

/// A short issue, or (`long`) one whose body is ~16,000 characters of log and description.
fn issue(n: u64, long: bool) -> StoredIssue {
    let products = ["kots", "troubleshoot", "kurl", "embedded-cluster", "sdk"];
    let p = products[n as usize % products.len()];
    StoredIssue {
        org: ORG.into(),
        repo: REPO.into(),
        issue: Issue {
            number: n,
            title: format!("Issue {n}: {p} fails after upgrade"),
            body: Some(if long {
                let line = format!(
                    "{n}: {p} controller reconcile failed: context deadline exceeded, retrying\n"
                );
                format!(
                    "Running {p} in our cluster fails with error code {n}. Log:\n{}",
                    line.repeat(16_000 / line.len())
                )
            } else {
                format!("Running {p} in our cluster fails with error code {n}. Logs attached.")
            }),
            state: "open".into(),
            labels: vec![Label {
                name: "bug".into(),
                color: None,
                description: None,
            }],
            user: Some(User {
                login: "reporter".into(),
                id: Some(1),
            }),
            comments: vec![Comment {
                id: n as i64,
                user: Some(User {
                    login: "helper".into(),
                    id: Some(2),
                }),
                body: Some("Can you attach a support bundle?".into()),
                created_at: Some("2024-01-01T00:00:00Z".into()),
                updated_at: None,
            }],
            created_at: Some("2024-01-01T00:00:00Z".into()),
            updated_at: Some("2024-01-02T00:00:00Z".into()),
            ..Default::default()
        },
        metadata: Metadata::now(),
    }
}

struct Outcome {
    processed: usize,
    failed: usize,
    /// HTTP requests made, retries included.
    requests: u64,
    /// Requests the fake refused with 429.
    rejected: usize,
    secs: f64,
    /// Issues with a stored result afterwards.
    stored: usize,
    /// Tokens the fake drew from its tokens-per-minute window.
    tokens: u64,
    /// Seconds from the first to the last request the fake received.
    span: f64,
    /// Tokens of the last request the fake received.
    last_tokens: u64,
}

/// One run in a fresh data directory: `n` issues, `concurrency` in flight, a fresh fake (with
/// `tpm`: a tokens-per-minute limit and long issues).
fn measure(
    rt: &tokio::runtime::Runtime,
    n: usize,
    concurrency: usize,
    a: &Args,
    tpm: Option<u64>,
) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path().join("data"));
    store.ensure_dirs()?;
    for i in 1..=n as u64 {
        store.write_issue(&issue(i, tpm.is_some()))?;
    }
    let path = dir.path().join("data/issues.duckdb");
    let mut db = Db::open(&path, Duration::from_secs(10))?;
    github_analysis::ingest::sync(&store, &mut db, false, &indicatif::ProgressBar::hidden())?;
    // One connection per file in a process: the selection runs read-only between two.
    drop(db);
    let select = || -> anyhow::Result<Vec<IssueRef>> {
        let ro = ReadOnlyDb::open(&path, Duration::from_secs(10))?;
        Ok(Pipeline::new()
            .where_state(IssueState::All)
            .where_repo(ORG, REPO)
            .select(&ro, "product-labeling")?
            .issues)
    };
    let items = select()?;
    let mut db = Db::open(&path, Duration::from_secs(10))?;

    let fake = openai::FakeOpenAi::with_rate_limit(a.rpm, Duration::from_millis(a.latency_ms), 2);
    if let Some(tpm) = tpm {
        fake.set_token_limit(tpm, Duration::from_secs(a.tpm_burst_secs));
    }
    let model = ModelSpec::parse("openai:gpt-4o-mini")?;
    let endpoint = Endpoint {
        base_url: fake.url.clone(),
        key: Secret::new(openai::KEY),
    };
    let engine = Arc::new(Engine {
        processor: Processor::get("product-labeling", &Options::default())?,
        model: model.clone(),
        provider: Provider::new(&model, Some(endpoint), GenSettings::default())?,
        http: Some(HttpClient::new(RetryPolicy::default())?),
        prices: PriceTable::builtin(),
        notices: Default::default(),
    });
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let bar = indicatif::ProgressBar::hidden();
    let report = rt.block_on(realtime::run(
        engine,
        &store,
        &mut db,
        items,
        concurrency,
        realtime::Control {
            progress: &bar,
            interrupts: rx,
            on_note: |m: &str| eprintln!("{m}"),
        },
    ))?;
    for (i, why) in report.failed.iter().take(5) {
        eprintln!("failed {i}: {why}");
    }
    drop(db);
    let stored = select()?.iter().filter(|i| i.has_result).count();
    let log = fake.requests();
    let rejected = log.iter().filter(|r| r.status == 429).count();
    let tokens = log.iter().map(|r| r.tokens).sum();
    let last_tokens = log.iter().max_by_key(|r| r.at).map_or(0, |r| r.tokens);
    // How the client's estimate of a request's tokens compares with what the fake counted.
    let counted: Vec<_> = log.iter().filter(|r| r.tokens > 0).collect();
    if !counted.is_empty() {
        let est: u64 = counted
            .iter()
            .map(|r| {
                r.raw.len().div_ceil(4) as u64
                    + r.body["max_completion_tokens"].as_u64().unwrap_or(0)
            })
            .sum();
        let fake: u64 = counted.iter().map(|r| r.tokens).sum();
        eprintln!(
            "client estimate / fake count of request tokens: {:.3}",
            est as f64 / fake as f64
        );
    }
    // The span over which the fake received requests (the pacing's window; excludes the
    // run's start-up and its last answer).
    let span = match (
        log.iter().map(|r| r.at).min(),
        log.iter().map(|r| r.at).max(),
    ) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Outcome {
        processed: report.processed,
        failed: report.failed.len(),
        requests: report.requests,
        rejected,
        secs: report.elapsed.as_secs_f64(),
        stored,
        tokens,
        span,
        last_tokens,
    })
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let limit = a.rpm as f64 / 60.0;
    println!(
        "fake OpenAI: {} ms latency, {} requests/minute ({limit:.1} req/s); processor product-labeling",
        a.latency_ms, a.rpm
    );
    println!(
        "{:>11} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8} {:>8} {:>9}",
        "concurrency",
        "issues",
        "stored",
        "failed",
        "requests",
        "429s",
        "secs",
        "req/s",
        "of limit"
    );
    let mut lost = false;
    let mut check = |n: usize, o: &Outcome| {
        if o.processed != n || o.failed != 0 || o.stored != n {
            lost = true;
            eprintln!(
                "LOST ITEMS: {n} issues, {} processed, {} failed, {} stored",
                o.processed, o.failed, o.stored
            );
        }
    };
    for (n, c) in [(a.issues, a.concurrency), (a.sequential_issues, 1)] {
        if n == 0 {
            continue;
        }
        let o = measure(&rt, n, c, &a, None)?;
        // Achieved rate: answered requests (one per issue) per second of the whole run.
        let rate = o.processed as f64 / o.secs;
        println!(
            "{:>11} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8.1} {:>8.2} {:>9.2}",
            c,
            n,
            // Issues with a stored result, read back from the database (not the run's count).
            o.stored,
            o.failed,
            o.requests,
            o.rejected,
            o.secs,
            rate,
            rate / limit
        );
        check(n, &o);
        println!(
            "BENCH {}",
            serde_json::json!({"name": format!("realtime_rpm_bound_c{c}"), "tool": rate,
                "reference": limit, "reference_name": "the fake's RPM limit",
                "ratio": rate / limit, "target": if c == 1 { "(sequential: latency-bound)" } else { ">= 0.9 of the RPM limit, none lost" },
                "unit": "req/s"})
        );
    }
    if a.tpm_issues > 0 {
        let o = measure(&rt, a.tpm_issues, a.concurrency, &a, Some(a.tpm))?;
        let burst = a.tpm as f64 / 60.0 * a.tpm_burst_secs as f64;
        // Held: what the fake counted beyond its initial bucket (free to any client), per minute
        // of the span over which it received requests. The last request's tokens are left out:
        // they were granted at the span's end.
        let last = o.last_tokens as f64;
        let held = (o.tokens as f64 - burst - last).max(0.0) / (o.span / 60.0);
        let over_run = (o.tokens as f64 - burst).max(0.0) / (o.secs / 60.0);
        println!(
            "tokens-per-minute bound: {} long issues, TPM limit {} (bucket {:.0} tokens), concurrency {}: \
             {} tokens, requests over {:.1}s (run {:.1}s), {} requests, {} x 429; held {:.0} tokens/min = {:.2} \
             of the limit ({:.2} over the whole run, start-up and last answer included)",
            a.tpm_issues, a.tpm, burst, a.concurrency, o.tokens, o.span, o.secs, o.requests, o.rejected,
            held, held / a.tpm as f64, over_run / a.tpm as f64
        );
        check(a.tpm_issues, &o);
        println!(
            "BENCH {}",
            serde_json::json!({"name": "realtime_tpm_held", "tool": held, "reference": a.tpm,
                "reference_name": "the fake's TPM limit", "ratio": held / a.tpm as f64,
                "target": ">= 0.9 of the TPM limit", "unit": "tokens/min"})
        );
        println!(
            "BENCH {}",
            serde_json::json!({"name": "realtime_tpm_429s", "tool": o.rejected, "reference": 0,
                "reference_name": "no 429", "ratio": o.rejected, "target": "0", "unit": "429s"})
        );
    }
    if lost {
        anyhow::bail!("some items were lost");
    }
    println!("no item lost: every issue has exactly one stored result in each run");
    Ok(())
}
