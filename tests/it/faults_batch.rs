//! Fault suite, batch half (issue 11, "Tests"): 1,000 issues through `process-query missing
//! --batch-mode --wait` against the batch fakes in seeded fault mode — 20% of the provider
//! requests fail (429, 500, 503, timeouts: held past the client's timeout) and 20% of the request
//! lines get an invalid answer or a per-line error. Every issue must end stored or recorded as
//! failed, none lost, none billed twice (provider batches, uploads and request lines counted on
//! the fake). The figures are printed (`cargo test --test it faults_batch -- --nocapture`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fakes::batches::{self, chaos, FakeBatches, LineReply};
use crate::support::{batch_wait_args, env_with_issues, Env};

const ORG: &str = "replicatedhq";
const REPO: &str = "faults";
const ISSUES: u64 = 1_000;
const SEED: u64 = 0x5eed_0011;
const RATE: f64 = 0.2;

fn setup() -> Env {
    let products = [
        "kots",
        "troubleshoot",
        "embedded-cluster",
        "kurl",
        "billing",
    ];
    env_with_issues(ORG, REPO, ISSUES, |i| {
        let p = products[(i % 5) as usize];
        (
            format!("{p}: install fails on node {i}"),
            format!("Running {p} on a fresh cluster stops with an error."),
        )
    })
}

fn suite(provider: batches::Kind) {
    let started = Instant::now();
    let env = setup();
    let fake = FakeBatches::start();
    let script = chaos::seeded_lines(SEED, RATE, Arc::new(batches::default_reply));
    fake.set_script(script.clone());
    // Held answers outlast the client's 1 s request and idle timeouts.
    fake.set_chaos(SEED, RATE, Duration::from_millis(2_000));
    let (mut vars, model, parts_var) = match provider {
        batches::Kind::OpenAi => (
            fake.openai_env(),
            "openai:gpt-4o-mini",
            "GITHUB_ANALYSIS_OPENAI_BATCH_MAX_REQUESTS",
        ),
        batches::Kind::Anthropic => (
            fake.anthropic_env(),
            "anthropic:claude-haiku-4-5",
            "GITHUB_ANALYSIS_ANTHROPIC_BATCH_MAX_REQUESTS",
        ),
    };
    vars.extend([
        // Four provider batches of 250 requests.
        (parts_var, "250".to_string()),
        ("GITHUB_ANALYSIS_REQUEST_TIMEOUT", "1".to_string()),
        ("GITHUB_ANALYSIS_TRANSFER_IDLE_TIMEOUT", "1".to_string()),
    ]);
    let r = env.run_json(
        &vars,
        &batch_wait_args(model, "0.05", &["--max-retries", "10"]),
    );
    // Items failed (the injected line faults): exit 1 with the retry hint, never a crash.
    r.fails_with("batch retry");

    // What the provider billed: four batches, each request line in exactly one of them.
    let created = fake.batches();
    assert_eq!(created.len(), 4, "provider batches: {created:?}");
    let mut lines = 0usize;
    let mut ids = HashSet::new();
    let mut expected_failed = 0usize;
    for b in &created {
        let id = b["id"].as_str().unwrap();
        for line in fake.input_lines(id) {
            lines += 1;
            let cid = line["custom_id"].as_str().unwrap().to_string();
            let body = match provider {
                batches::Kind::OpenAi => &line["body"],
                batches::Kind::Anthropic => &line["params"],
            };
            let call = batches::call_of(provider, &cid, body);
            if !matches!(script(&call), LineReply::Answer(_)) {
                expected_failed += 1;
            }
            assert!(ids.insert(cid), "a request line was sent twice");
        }
    }
    assert_eq!(lines, ISSUES as usize, "request lines billed");
    let uploads = fake
        .requests()
        .iter()
        .filter(|q| {
            q.method == "POST"
                && q.status == 200
                && (q.path == "/v1/files" || q.path == "/v1/messages/batches")
        })
        .count();
    assert_eq!(uploads, 4, "accepted uploads / batch creates");

    // What the store says: every issue once, stored or recorded as failed.
    let counts =
        env.rows("SELECT status, count(*) AS n FROM batch_items GROUP BY status ORDER BY status");
    let n = |status: &str| {
        counts
            .iter()
            .find(|r| r["status"] == status)
            .and_then(|r| r["n"].as_u64())
            .unwrap_or(0) as usize
    };
    let (completed, failed) = (n("completed"), n("failed"));
    assert_eq!(completed + failed, ISSUES as usize, "{counts:?}");
    assert_eq!(failed, expected_failed, "{counts:?}");
    let results = env.scalar("SELECT count(*) FROM ai_results WHERE mode = 'batch'");
    assert_eq!(results, json!(completed));
    let twice = env.rows(
        "SELECT issue_id FROM batch_items GROUP BY issue_id HAVING count(*) <> 1
         UNION ALL SELECT issue_id FROM ai_results GROUP BY issue_id HAVING count(*) <> 1",
    );
    assert_eq!(twice, Vec::<Value>::new());
    let records = std::fs::read_dir(env.data().join("results/failures"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(records, failed, "one failure record per failed issue");
    // Collecting again (as `batch-status` does) changes nothing.
    let again = env.run_json(&vars, &["process-query", "batch-status"]).ok();
    assert!(!again.stdout.is_empty());
    assert_eq!(
        env.scalar("SELECT count(*) FROM ai_results"),
        json!(completed)
    );

    let (injected, seen) = fake.chaos_counts();
    assert!(injected.total() > 0, "no fault was injected");
    println!(
        "FAULTS {:?}: {ISSUES} issues, {} provider batches, {lines} request lines billed once; \
         {seen} HTTP requests to the fake, {} faults injected ({} 429, {} 500, {} 503, {} \
         timeouts); {expected_failed} lines with an injected invalid answer or line error; \
         stored {completed}, recorded as failed {failed}, lost 0; {:.1} s",
        provider,
        created.len(),
        injected.total(),
        injected.rate_limited,
        injected.server_error,
        injected.unavailable,
        injected.timeout,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn openai_batch_mode_over_1000_issues_with_20_percent_faults_loses_nothing() {
    suite(batches::Kind::OpenAi);
}

#[test]
fn anthropic_batch_mode_over_1000_issues_with_20_percent_faults_loses_nothing() {
    suite(batches::Kind::Anthropic);
}
