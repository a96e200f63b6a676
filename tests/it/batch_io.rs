//! Batch I/O: collect's per-chunk durability (a crash mid-collect, then a re-run, stores every
//! result exactly once), and the idle timeouts of uploads and downloads against a fake that
//! moves bytes slowly or stops moving them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fakes::batches::throttle::Throttle;
use crate::fakes::batches::{Advance, FakeBatches};
use crate::support::{batch_submit_args, env_with_issues, files_in, Env, Run};

const ORG: &str = "replicatedhq";
const REPO: &str = "batch-io";
const OPENAI: &str = "openai:gpt-4o-mini";

/// `n` issues naming a product each, imported.
fn setup(n: u64) -> Env {
    let products = ["kots", "troubleshoot", "embedded-cluster", "kurl"];
    env_with_issues(ORG, REPO, n, |i| {
        let p = products[(i % 4) as usize];
        (
            format!("{p} fails on node {i}"),
            format!("Running {p} stops with an error."),
        )
    })
}

/// `batch submit product-labeling` of ORG with OPENAI and `extra`, which must succeed; the job id.
fn submit(env: &Env, vars: &[(&str, String)], extra: &[&str]) -> String {
    let job = env
        .run_json(vars, &batch_submit_args(ORG, OPENAI, extra))
        .ok()
        .json();
    job["job_id"].as_str().expect("a job id").to_string()
}

fn with(a: &[(&'static str, String)], b: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut v = a.to_vec();
    v.extend(b.iter().map(|(k, x)| (*k, x.to_string())));
    v
}

/// The fake's OpenAI environment with this transfer idle timeout (seconds).
fn idle_timeout(fake: &FakeBatches, seconds: &str) -> Vec<(&'static str, String)> {
    with(
        &fake.openai_env(),
        &[("GITHUB_ANALYSIS_TRANSFER_IDLE_TIMEOUT", seconds)],
    )
}

/// A fake with a 64 KB receive buffer whose batches move only when told: the client's bytes can
/// get ahead of a slow (or stalled) reader only by its own send buffer (about 1.3 MB on
/// loopback), not by megabytes more of kernel buffers, so a slow or stalled upload reaches the
/// client's writes.
fn small_buffer_fake() -> FakeBatches {
    let fake = FakeBatches::start_with_receive_buffer(64 * 1024);
    fake.set_advance(Advance::Manual);
    fake
}

#[test]
fn a_crash_mid_collect_then_a_rerun_stores_every_result_exactly_once() {
    let env = setup(7);
    let fake = FakeBatches::start();
    fake.set_advance(Advance::Manual);
    let vars = fake.openai_env();
    let jid = submit(&env, &vars, &[]);
    fake.finish_all();

    // Chunks of two lines; the process dies after the second chunk's files are durable and
    // before its rows commit.
    let crash = with(&vars, &[("GITHUB_ANALYSIS_BATCH_CRASH_AT", "collect")]);
    let r: Run = env.run_json(&crash, &["batch", "collect", &jid]);
    assert_ne!(r.code, 0, "the crash hook did not fire: {}", r.stderr);
    let stored = env.scalar("SELECT count(*) FROM ai_results");
    assert_eq!(stored, json!(2), "only the first chunk committed");
    let open = env.scalar(&format!(
        "SELECT count(*) FROM batch_items WHERE job_id = '{jid}' AND status NOT IN ('completed', 'failed')"
    ));
    assert_eq!(open, json!(5), "the interrupted chunk's items stay open");
    // The second chunk's files are on disk already (written before the crash).
    let results = env.data().join("results");
    assert_eq!(files_in(&results).len(), 4, "{:?}", files_in(&results));

    let r = env.run_json(&vars, &["batch", "collect", &jid]).ok().json();
    assert_eq!(
        (r["stored"].as_i64(), r["failed"].as_i64()),
        (Some(5), Some(0)),
        "{r}"
    );
    let per_issue = env.rows(
        "SELECT issue_id, count(*) AS n FROM ai_results GROUP BY issue_id HAVING count(*) <> 1",
    );
    assert_eq!(per_issue, Vec::<Value>::new());
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), json!(7));
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM batch_items WHERE job_id = '{jid}' AND status = 'completed'"
        )),
        json!(7)
    );
    // One file per issue, no temporary files left behind.
    let names = files_in(&results);
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    // Collecting again changes nothing.
    let again = env.run_json(&vars, &["batch", "collect", &jid]).ok().json();
    assert_eq!(again["stored"].as_i64(), Some(0), "{again}");
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), json!(7));
}

/// `n` issues with long bodies (about 30 KB of request each), imported.
fn setup_long(n: u64) -> Env {
    let body = "The kots admin console times out while the upgrade runs; logs follow. ".repeat(400);
    env_with_issues(ORG, REPO, n, |i| {
        (format!("kots upgrade fails on node {i}"), body.clone())
    })
}

#[test]
fn slow_but_moving_uploads_and_downloads_outlive_the_idle_timeout() {
    let env = setup_long(200);
    let fake = small_buffer_fake();
    // The fake reads the ~6 MB upload at 2 MB/s and sends the results (~150 KB) at 40 KB/s:
    // each transfer takes several seconds, longer than the 2 s idle timeout, but bytes keep
    // moving.
    fake.throttle_uploads(Throttle {
        chunk: 64 * 1024,
        every: Duration::from_millis(32),
        stall_after: None,
    });
    fake.throttle_downloads(Throttle {
        chunk: 1024,
        every: Duration::from_millis(25),
        stall_after: None,
    });
    let vars = idle_timeout(&fake, "2");
    let jid = submit(&env, &vars, &["--max-retries", "0"]);
    assert_eq!(fake.batches().len(), 1, "one batch created");
    fake.finish_all();
    let r = env.run_json(&vars, &["batch", "collect", &jid]).ok().json();
    assert_eq!(r["stored"].as_i64(), Some(200), "{r}");
    let took = fake.throttled_transfers();
    let longest = |dir: &str| {
        took.iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, s)| *s)
            .fold(0.0, f64::max)
    };
    // What makes this test meaningful: a whole-request timeout of 2 s would have failed both.
    assert!(longest("upload") > 2.0, "{took:?}");
    assert!(longest("download") > 2.0, "{took:?}");
    // One upload, one download: nothing was retried.
    assert_eq!(fake.count("POST", "/v1/files"), 1);
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|q| q.method == "GET" && q.path.ends_with("/content"))
            .count(),
        1
    );
}

#[test]
fn a_stalled_upload_fails_after_the_idle_timeout_with_a_clear_message() {
    // An upload far larger than the loopback socket buffers, so the stall reaches the client's
    // writes instead of hiding in kernel buffers.
    let env = setup_long(200);
    let fake = small_buffer_fake();
    fake.throttle_uploads(Throttle {
        chunk: 1024,
        every: Duration::from_millis(5),
        stall_after: Some(2048),
    });
    let vars = idle_timeout(&fake, "1");
    let r = env.run_json(
        &vars,
        &batch_submit_args(ORG, OPENAI, &["--max-retries", "1"]),
    );
    let all = format!("{}\n{}", r.stdout, r.stderr);
    assert!(
        all.contains("stalled: no bytes moved for 1 s")
            && all.contains("GITHUB_ANALYSIS_TRANSFER_IDLE_TIMEOUT"),
        "exit {}: {all}",
        r.code
    );
    // Retried once (--max-retries 1), and no batch was created from a half upload.
    assert_eq!(fake.throttled_started("upload"), 2);
    assert!(fake.batches().is_empty());
}

#[test]
fn a_stalled_download_fails_collect_after_the_idle_timeout_instead_of_hanging() {
    let env = setup(6);
    let fake = FakeBatches::start();
    fake.set_advance(Advance::Manual);
    let vars = idle_timeout(&fake, "1");
    let jid = submit(&env, &vars, &["--max-retries", "1"]);
    fake.finish_all();
    fake.throttle_downloads(Throttle {
        chunk: 512,
        every: Duration::from_millis(5),
        stall_after: Some(1024),
    });
    let r = env.run_json(&vars, &["batch", "collect", &jid]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    r.says("error:")
        .says("stalled: no bytes moved for 1 s")
        .says("GITHUB_ANALYSIS_TRANSFER_IDLE_TIMEOUT");
    // Nothing stored from a partial file, no partial file left as if complete.
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), json!(0));
    let out = env.data().join("batch/output");
    assert!(
        files_in(&out).iter().all(|n| !n.ends_with(".jsonl")),
        "{:?}",
        files_in(&out)
    );
    // Once the link is healthy again, the same collect stores everything.
    fake.throttle_downloads(Throttle {
        chunk: 1 << 20,
        every: Duration::ZERO,
        stall_after: None,
    });
    let r = env.run_json(&vars, &["batch", "collect", &jid]).ok().json();
    assert_eq!(r["stored"].as_i64(), Some(6), "{r}");
}
