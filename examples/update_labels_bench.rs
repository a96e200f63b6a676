//! Benchmark of `update-labels` against the in-process fake GitHub server: 1,000 approved
//! recommendations (each adds one label and removes one), requests per changed issue (target:
//! at most 2 writes + 1 read) and on the re-run (target: no write), and the wall time GitHub's
//! secondary limits impose on the writes, next to the least those limits allow.
//!
//! Run: `cargo run --example update_labels_bench [-- ISSUES | --quick]` (default 1,000; `--quick`: 100). Issues are collected and
//! labelled with the offline `rules` model through the real command path; approval and the
//! apply run call the same library functions `recommendations approve --all` and
//! `update-labels --remove-labels --yes` call (so 1,000 result rows are not printed). The writes
//! are not paced here (a pacing scale of 0, `GITHUB_ANALYSIS_WRITE_PACE=0`): at GitHub's real
//! pace 2,000 writes take over three hours; that wall time is computed by the pacer's own
//! schedule (`Schedule::simulate`), not waited for.

#[path = "../tests/it/fakes/github/mod.rs"]
mod github;
#[path = "../tests/it/fakes/serve.rs"]
mod serve;

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use github::{FakeGitHub, FakeIssue};
use github_analysis::cli::Cli;
use github_analysis::commands::{dispatch, Ctx, Settings};
use github_analysis::db::{Db, RecFilter, RecStatus};
use github_analysis::error::ExitStatus;
use github_analysis::github::client::{Client, ClientConfig};
use github_analysis::github::pacing::{Pacer, Schedule, GITHUB_WRITE_LIMITS};
use github_analysis::printer::OutputFormat;
use github_analysis::processors::taxonomy::Taxonomy;
use github_analysis::recommendations::apply::{self, ApplyOptions, Outcome};
use github_analysis::recommendations::review;
use github_analysis::report::Silent;
use github_analysis::store::Store;
use support::bench_line;

const OWNER: &str = "bench";
const REPO: &str = "app";

fn dataset(n: u64) -> Vec<FakeIssue> {
    (1..=n)
        .map(|k| {
            let mut i = FakeIssue::new(
                k,
                &format!("kotsadm upgrade {k} fails"),
                "2024-05-02T00:00:00Z",
            )
            .labels(&["product::kurl"]);
            i.body = Some("kubectl kots upgrade fails and the admin console restarts.".into());
            i
        })
        .collect()
}

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        data_dir: dir.to_path_buf(),
        format: OutputFormat::Json,
        lock_timeout: Duration::from_secs(30),
        verbose: 0,
        quiet: true,
    }
}

async fn command(dir: &std::path::Path, args: &[&str]) {
    let mut argv = vec!["github-analysis"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("valid arguments");
    match dispatch(cli.command, &Ctx::new(settings(dir))).await {
        Ok(ExitStatus::Success) => {}
        other => {
            eprintln!("{args:?} ended with {other:?}");
            std::process::exit(1);
        }
    }
}

/// One apply run as `update-labels --remove-labels --yes` does it; returns (outcomes, wall).
async fn apply_run(
    gh: &FakeGitHub,
    dir: &std::path::Path,
) -> anyhow::Result<(HashMap<&'static str, usize>, Duration)> {
    gh.clear_log();
    let mut db = Db::open(&dir.join("issues.duckdb"), Duration::from_secs(30))?;
    let filter = RecFilter {
        statuses: vec![RecStatus::Approved],
        org: Some(OWNER.into()),
        ..RecFilter::default()
    };
    let opts = ApplyOptions {
        remove_labels: true,
        ..ApplyOptions::default()
    };
    let plans = apply::plan(&db, &filter, opts)?;
    let cfg = ClientConfig::new(Some(&gh.url), None, github::TOKEN.into(), Some("0.1"), None)?;
    let client = Client::new(cfg, Arc::new(Silent))?;
    let pacer = Pacer::new(0.0, Arc::new(Silent));
    let store = Store::new(dir);
    let taxonomy = Taxonomy::default_replicated()?;
    let mut deps = apply::Deps {
        client: &client,
        pacer: &pacer,
        db: &mut db,
        store: &store,
        taxonomy: &taxonomy,
        reporter: Arc::new(Silent),
    };
    let start = Instant::now();
    let (results, local_failed) = apply::apply(&plans, opts, &mut deps, |_| {}).await?;
    let took = start.elapsed();
    let mut out = HashMap::new();
    for r in &results {
        let k = match r.outcome {
            Outcome::Applied => "applied",
            Outcome::AlreadyDone => "already_done",
            Outcome::HeldBack => "held_back",
            Outcome::Planned => "planned",
            Outcome::Failed => "failed",
        };
        *out.entry(k).or_insert(0) += 1;
    }
    if !local_failed.is_empty() {
        eprintln!("warning: {} local copies not updated", local_failed.len());
    }
    Ok((out, took))
}

/// The least wall time GitHub's documented limits allow for `w` content-creating requests: 500
/// per hour, at most 80 per minute (0.75 s apart) within an hour.
fn documented_minimum(w: usize) -> f64 {
    if w == 0 {
        return 0.0;
    }
    let full_hours = (w - 1) / GITHUB_WRITE_LIMITS.per_hour;
    let rest = (w - 1) % GITHUB_WRITE_LIMITS.per_hour;
    full_hours as f64 * 3600.0 + rest as f64 * 60.0 / GITHUB_WRITE_LIMITS.per_minute as f64
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = match std::env::args().nth(1).as_deref() {
        Some("--quick") => 100,
        Some(a) => a.parse().unwrap_or(1_000),
        None => 1_000,
    };
    let gh = FakeGitHub::start();
    gh.add_repo(OWNER, REPO, dataset(n));
    gh.define_labels(OWNER, REPO, &[("product::kots", Some("KOTS"))]);
    for (k, v) in gh.env() {
        std::env::set_var(k, v);
    }
    let dir = tempfile::tempdir()?;
    let setup = Instant::now();
    command(dir.path(), &["collect", "--org", OWNER, "--repo", REPO]).await;
    command(
        dir.path(),
        &[
            "process",
            "product-labeling",
            "--org",
            OWNER,
            "--model",
            "rules",
        ],
    )
    .await;
    {
        let mut db = Db::open(&dir.path().join("issues.duckdb"), Duration::from_secs(30))?;
        let pending = db.recommendations(&RecFilter {
            statuses: vec![RecStatus::Pending],
            ..RecFilter::default()
        })?;
        review::decide_all(&mut db, &pending, RecStatus::Approved, None)?;
        eprintln!(
            "setup: {} issues collected, processed and approved in {:.1}s",
            pending.len(),
            setup.elapsed().as_secs_f64()
        );
    }

    let (outcomes, wall) = apply_run(&gh, dir.path()).await?;
    let log = gh.requests();
    let count = |m: &str, part: &str| {
        log.iter()
            .filter(|l| l.method == m && l.target.contains(part))
            .count()
    };
    let issue_reads = count("GET", "/issues/");
    let label_reads = count("GET", "/labels/");
    let posts = count("POST", "/labels");
    let deletes = count("DELETE", "/labels/");
    let writes = gh.writes().len();
    let reads = log.len() - writes;
    let changed = *outcomes.get("applied").unwrap_or(&0);
    let (rerun, rerun_wall) = apply_run(&gh, dir.path()).await?;
    let rerun_log = gh.requests();
    let rerun_writes = gh.writes().len();

    println!("update-labels benchmark: {n} approved recommendations (add 1 label, remove 1 each), fake GitHub on loopback");
    println!(
        "first run: {outcomes:?} in {:.2}s (pacing off)",
        wall.as_secs_f64()
    );
    println!("  reads: {reads} ({issue_reads} issue GETs, {label_reads} label lookups); writes: {writes} ({posts} POST, {deletes} DELETE)");
    let per = |x: usize| {
        if changed == 0 {
            0.0
        } else {
            x as f64 / changed as f64
        }
    };
    println!(
        "  per changed issue: {:.3} requests = {:.3} writes + {:.3} reads",
        per(reads + writes),
        per(writes),
        per(reads)
    );
    println!(
        "re-run: {rerun:?}, {} requests ({} writes) in {:.2}s",
        rerun_log.len(),
        rerun_writes,
        rerun_wall.as_secs_f64()
    );
    let paced = Schedule::simulate(GITHUB_WRITE_LIMITS, writes, 0.0);
    let least = documented_minimum(writes);
    println!(
        "at GitHub's pace ({}s apart, <= {}/min, <= {}/h): {writes} writes take {:.0}s ({:.2} h); the documented limits allow at least {:.0}s ({:.2} h)",
        GITHUB_WRITE_LIMITS.gap,
        GITHUB_WRITE_LIMITS.per_minute,
        GITHUB_WRITE_LIMITS.per_hour,
        paced,
        paced / 3600.0,
        least,
        least / 3600.0
    );
    bench_line(
        "update_labels_requests_per_changed_issue",
        per(reads + writes),
        3.0,
        "2 writes + 1 read",
        "<= 3",
        "requests",
    );
    bench_line(
        "update_labels_writes_per_changed_issue",
        per(writes),
        2.0,
        "1 POST + 1 DELETE",
        "<= 2",
        "requests",
    );
    bench_line(
        "update_labels_reads_per_changed_issue",
        per(reads),
        1.0,
        "1 issue GET",
        "~1 (label lookups cached per run)",
        "requests",
    );
    bench_line(
        "update_labels_rerun_writes",
        rerun_writes as f64,
        0.0,
        "none",
        "0",
        "requests",
    );
    bench_line(
        "update_labels_pacing_wall",
        paced,
        least,
        "least the documented limits allow",
        "GitHub's secondary limits (80/min, 500/h)",
        "s",
    );
    bench_line(
        "update_labels_unpaced_wall_on_fake",
        wall.as_secs_f64(),
        wall.as_secs_f64(),
        "itself",
        "info (loopback, pacing off)",
        "s",
    );
    Ok(())
}
