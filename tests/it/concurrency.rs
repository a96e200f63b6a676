//! Two CLI processes on one data directory at once: a real-time run that waits on the network
//! (or a prompt) leaves the database to `query` and `process-query batch-status` of another terminal, and
//! both finish with every result stored (docs/architecture.md, "Who holds the database").

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fakes::openai::{self as fo, FakeOpenAi};
use crate::support::{labeling_args, Env};
use serde_json::json;

const ORG: &str = "acme";
const REPO: &str = "app";

fn spawn(env: &Env, vars: &[(&'static str, String)], args: &[&str]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_github-analysis"));
    c.current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_ANALYSIS_DATA_DIR", env.data())
        .env("NO_COLOR", "1")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.spawn().expect("spawn the CLI")
}

/// Polls `what` until it returns `Some`, or fails the test after `limit`.
fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_waiting_on_the_provider_leaves_the_database_to_other_processes() {
    let env = Env::new();
    let issues: Vec<_> = (1..=2)
        .map(|n| {
            crate::support::stored_issue(ORG, REPO, n, "kotsadm crashes", "after upgrade", &[], &[])
        })
        .collect();
    env.import_json(&json!(issues));
    let held = format!("{ORG}/{REPO}#2");
    let fake = FakeOpenAi::with_script(Arc::new(move |c: &fo::Call| {
        if c.issue.as_deref() == Some(held.as_str()) {
            fo::Reply::Hold
        } else {
            fo::Reply::Answer(fo::default_answer(c))
        }
    }));
    let mut run = spawn(
        &env,
        &fake.env(),
        &labeling_args(ORG, "gpt-4o-mini", &["--concurrency", "1"]),
    );
    // Issue 1 is answered and stored; issue 2's request is held by the fake.
    eventually(Duration::from_secs(60), "the held request", || {
        (!fake.requests_for(&format!("{ORG}/{REPO}#2")).is_empty()).then_some(())
    });
    // `query` from another terminal, with a short lock wait: it gets in while the run waits,
    // and sees the result already stored.
    let stored = eventually(Duration::from_secs(30), "a query beside the run", || {
        let out = env
            .cmd()
            .args(["--lock-timeout", "2", "query", "sql"])
            .arg("SELECT count(*) AS n FROM ai_results")
            .args(["--format", "json"])
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("locked by another process"), "{err}");
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = v[0]["n"].as_i64().unwrap();
        (n == 1).then_some(n)
    });
    assert_eq!(stored, 1);
    // A writer too (`process-query batch-status` refreshes and records), within a bounded wait.
    env.cmd()
        .args(["--lock-timeout", "10", "process-query", "batch-status"])
        .assert()
        .success();
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run must still be waiting on the provider"
    );
    fake.release(1);
    let status = run.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 2);
}
