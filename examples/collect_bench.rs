//! Benchmark of `collect` against the in-process fake GitHub server:
//!
//! 1. one repository: requests per 1,000 issues and wall time, our strategy (GraphQL pages of
//!    100 issues with labels and comments, REST only where needed) against a plain REST strategy
//!    (1 list page per 100 issues + 1 comments request per issue). The REST run gets a bucket
//!    large enough for all its requests, so its wall time is fetching only (with GitHub's 5,000
//!    requests per hour it would also wait for the next window: printed, not slept);
//! 2. an organisation of REPOS repositories × ISSUES_PER_REPO issues, with GitHub's response
//!    time simulated (LATENCY_MS per answer): `--parallel-repos 1` (sequential) next to the
//!    default parallel collect, and requests per 1,000 issues of each.
//!
//! Run: `cargo run --example collect_bench [-- ISSUES [REPOS [ISSUES_PER_REPO [LATENCY_MS]]]]`
//! (defaults 5,000; 20 × 500; 250 ms). The fake server is the one the tests use
//! (tests/it/fakes/github/, included below with `#[path]`).

#[path = "../tests/it/fakes/github/mod.rs"]
mod github;
#[path = "../tests/it/fakes/serve.rs"]
mod serve;

use std::time::{Duration, Instant};

use clap::Parser;
use github::{FakeGitHub, FakeIssue};
use github_analysis::cli::Cli;
use github_analysis::commands::{dispatch, Ctx, Settings};
use github_analysis::error::ExitStatus;
use github_analysis::github::client::{Client, ClientConfig};
use github_analysis::printer::OutputFormat;
use github_analysis::report::Silent;
use serde_json::Value;

const OWNER: &str = "bench";
const REPO: &str = "big";

/// `n` issues (comments 0–12 each, every 500th a 150-comment thread) and one pull request per
/// 20 issues, as a real repository's REST list mixes them in.
fn dataset(n: u64) -> Vec<FakeIssue> {
    let mut out = Vec::new();
    for k in 1..=n {
        let day = 1 + (k % 28);
        let hour = k % 24;
        let updated = format!("2024-02-{day:02}T{hour:02}:{:02}:00Z", k % 60);
        let comments = if k.is_multiple_of(500) {
            150
        } else {
            ((k * 7919) % 13) as usize
        };
        let mut i = FakeIssue::new(k, &format!("Issue {k}"), &updated).with_comments(comments);
        if k.is_multiple_of(3) {
            i = i.labels(&["bug"]);
        }
        if k.is_multiple_of(4) {
            i = i.closed();
        }
        out.push(i);
        if k.is_multiple_of(20) {
            out.push(FakeIssue::new(n + k, &format!("PR {k}"), &updated).pr());
        }
    }
    out
}

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        data_dir: dir.to_path_buf(),
        format: OutputFormat::Json,
        lock_timeout: Duration::from_secs(10),
        verbose: 0,
        quiet: true,
    }
}

/// One `collect` run through the real command path (it prints its JSON summary); returns
/// (requests, wall time).
async fn run_collect(gh: &FakeGitHub, dir: &std::path::Path, extra: &[&str]) -> (usize, Duration) {
    let mut args = vec!["--org", OWNER, "--repo", REPO];
    args.extend_from_slice(extra);
    run_cli(gh, dir, &args).await
}

/// `collect ARGS --state all` through the real command path; returns (requests, wall time).
async fn run_cli(gh: &FakeGitHub, dir: &std::path::Path, extra: &[&str]) -> (usize, Duration) {
    // The fake's URL and token for this run (each fake listens on its own port).
    for (k, v) in gh.env() {
        std::env::set_var(k, v);
    }
    gh.clear_log();
    let mut argv = vec!["github-analysis", "collect", "--state", "all"];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).expect("valid arguments");
    let ctx = Ctx::new(settings(dir));
    let start = Instant::now();
    match dispatch(cli.command, &ctx).await {
        Ok(ExitStatus::Success) => {}
        Ok(status) => {
            eprintln!("collect ended with {status:?}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("collect failed: {e:#}");
            std::process::exit(1);
        }
    }
    let took = start.elapsed();
    (gh.request_count(), took)
}

/// The plain REST strategy: list pages of 100 (pull requests included, then dropped) and one
/// comments request per issue (more for threads over 100 comments). Fetch only, nothing stored.
async fn run_rest(gh: &FakeGitHub) -> anyhow::Result<(usize, Duration, usize)> {
    gh.clear_log();
    // Room for every request: the wall time is fetching, not waiting for a new hour.
    gh.set_limits(1_000_000, 1_000_000);
    let cfg = ClientConfig::new(Some(&gh.url), None, github::TOKEN.into(), Some("0.1"), None)?;
    let client = Client::new(cfg, std::sync::Arc::new(Silent))?;
    let start = Instant::now();
    let mut next = Some(client.api(&format!(
        "repos/{OWNER}/{REPO}/issues?state=all&per_page=100"
    ))?);
    let mut issues = 0;
    while let Some(url) = next {
        let page = client.get(&url, None).await?;
        next = page.next.clone();
        let items: Vec<Value> = serde_json::from_slice(&page.body)?;
        for item in items.iter().filter(|i| i.get("pull_request").is_none()) {
            issues += 1;
            let number = item["number"].as_u64().unwrap_or(0);
            let mut c = Some(client.api(&format!(
                "repos/{OWNER}/{REPO}/issues/{number}/comments?per_page=100"
            ))?);
            while let Some(u) = c {
                c = client.get(&u, None).await?.next;
            }
        }
    }
    Ok((gh.request_count(), start.elapsed(), issues))
}

/// An organisation of `repos` repositories of `per_repo` issues each (the same mix as
/// [`dataset`]).
fn org_server(repos: u64, per_repo: u64, latency_ms: u64) -> FakeGitHub {
    let gh = FakeGitHub::start();
    for r in 0..repos {
        gh.add_repo(ORG, &format!("repo-{r:02}"), dataset(per_repo));
    }
    gh.set_latency_ms(latency_ms);
    gh
}

const ORG: &str = "bench-org";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: u64| -> u64 {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let n = arg(1, 5_000);
    let (repos, per_repo, latency) = (arg(2, 20), arg(3, 500), arg(4, 250));
    let gh = FakeGitHub::start();
    gh.add_repo(OWNER, REPO, dataset(n));
    let dir = tempfile::tempdir()?;

    let (full_req, full_time) = run_collect(&gh, dir.path(), &[]).await;
    let (inc_req, inc_time) = run_collect(&gh, dir.path(), &[]).await;
    let (rest_req, rest_time, rest_issues) = run_rest(&gh).await?;

    let per_k = |req: usize, issues: u64| req as f64 * 1000.0 / issues as f64;
    println!(
        "collect benchmark: {n} issues (+{} pull requests), fake GitHub on loopback",
        n / 20
    );
    println!(
        "{:<48} {:>9} {:>14} {:>10}",
        "strategy", "requests", "req/1k issues", "wall"
    );
    let row = |name: &str, req: usize, issues: u64, t: Duration| {
        println!(
            "{name:<48} {req:>9} {:>14.1} {:>9.2}s",
            per_k(req, issues),
            t.as_secs_f64()
        );
    };
    row(
        "collect (GraphQL bulk), first run + store",
        full_req,
        n,
        full_time,
    );
    row(
        "collect, incremental re-run (no changes)",
        inc_req,
        n,
        inc_time,
    );
    row(
        "plain REST (list + comments/issue), fetch only",
        rest_req,
        n,
        rest_time,
    );
    // Loopback has no latency; against api.github.com each sequential request also waits a
    // round trip, which this projects (computed, not measured).
    println!(
        "at 100 ms per round trip, sequential requests add ~{:.0} s (collect) vs ~{:.0} s (plain REST)",
        full_req as f64 * 0.1,
        rest_req as f64 * 0.1
    );
    if rest_req > 5_000 {
        println!(
            "plain REST needs {rest_req} requests: more than a token's 5,000 per hour, so on GitHub it \
             would also wait for the next window (not simulated here)"
        );
    }
    if rest_issues as u64 != n {
        eprintln!("warning: REST strategy saw {rest_issues} issues, expected {n}");
    }

    // Organisation mode: sequential next to parallel, each into a fresh data directory.
    let total = repos * per_repo;
    println!();
    println!(
        "organisation: {repos} repositories x {per_repo} issues = {total} issues, {latency} ms per answer"
    );
    let seq_gh = org_server(repos, per_repo, latency);
    let seq_dir = tempfile::tempdir()?;
    let (seq_req, seq_time) = run_cli(
        &seq_gh,
        seq_dir.path(),
        &["--org", ORG, "--parallel-repos", "1"],
    )
    .await;
    let par_gh = org_server(repos, per_repo, latency);
    let par_dir = tempfile::tempdir()?;
    let (par_req, par_time) = run_cli(&par_gh, par_dir.path(), &["--org", ORG]).await;
    row(
        "collect --org, --parallel-repos 1 (sequential)",
        seq_req,
        total,
        seq_time,
    );
    row(
        "collect --org, default --parallel-repos 4",
        par_req,
        total,
        par_time,
    );
    println!(
        "parallel / sequential wall time = {:.2}; most requests in flight at once: {} vs {}",
        par_time.as_secs_f64() / seq_time.as_secs_f64(),
        par_gh.max_in_flight(),
        seq_gh.max_in_flight()
    );
    let bench = |name: &str, tool: f64, reference: f64, target: &str, unit: &str| {
        println!(
            "BENCH {}",
            serde_json::json!({"name": name, "tool": tool, "reference": reference,
                "ratio": tool / reference, "target": target, "unit": unit})
        );
    };
    bench(
        "collect_first_run_vs_plain_rest",
        full_time.as_secs_f64(),
        rest_time.as_secs_f64(),
        "< 1 (faster than plain REST fetching alone)",
        "s",
    );
    bench(
        "collect_org_parallel_vs_sequential",
        par_time.as_secs_f64(),
        seq_time.as_secs_f64(),
        "< 1 (faster than sequential)",
        "s",
    );
    bench(
        "collect_org_parallel_requests_per_1k_issues",
        per_k(par_req, total),
        15.0,
        "<= 15 requests per 1,000 issues",
        "requests",
    );
    Ok(())
}
