//! CLI tests of `batch …` against protocol-faithful fakes of the OpenAI Batch API and Anthropic
//! Message Batches (tests/it/fakes/batches/), and with the local executor: submission
//! order and splitting, status mapping, collection (shuffled output, error files, validation
//! failures, expiry, cancellation), idempotence, retries, faults and crashes between steps.
//! This file holds the shared fixtures; the tests are in the submodules.

use crate::fakes::batches::{Advance, FakeBatches};
use crate::support::{Env, Run};
use serde_json::{json, Value};

mod adoption;
mod claims;
mod lifecycle;
mod queue;
mod recovery;
mod running;

pub(super) const ORG: &str = "replicatedhq";
pub(super) const REPO: &str = "batch-test";
pub(super) const OPENAI: &str = "openai:gpt-4o-mini";
pub(super) const ANTHROPIC: &str = "anthropic:claude-haiku-4-5";

pub(super) fn stored(number: u64, title: &str, body: &str) -> Value {
    crate::support::stored_issue(ORG, REPO, number, title, body, &[], &[])
}

/// Four issues: kots, troubleshoot, embedded-cluster, none.
pub(super) fn setup() -> Env {
    let env = Env::new();
    let issues = json!([
        stored(
            1,
            "kotsadm pod crashes after upgrade",
            "kots admin console is blank after the upgrade."
        ),
        stored(
            2,
            "support-bundle collectors hang",
            "troubleshoot support-bundle never finishes."
        ),
        stored(
            3,
            "Install fails on k0s",
            "embedded-cluster install stops at the mirror step."
        ),
        stored(
            4,
            "Question about our invoice",
            "Who should we contact about billing?"
        ),
    ]);
    let s = env.import_json(&issues);
    assert_eq!(s["issues"], 4, "{s}");
    env
}

pub(super) fn id(n: u64) -> String {
    format!("{ORG}/{REPO}#{n}")
}

pub(super) fn run(env: &Env, vars: &[(&str, String)], args: &[&str]) -> Run {
    env.run_json(vars, args)
}

/// `batch submit product-labeling` and `extra`.
pub(super) fn submit_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["batch", "submit", "product-labeling"];
    v.extend_from_slice(extra);
    v
}

/// `batch submit product-labeling --org ORG --model <model>` and `extra`.
pub(super) fn org_submit_args<'a>(model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    crate::support::batch_submit_args(ORG, model, extra)
}

/// Submits every issue of [`ORG`] with `model`; the (successful) answer.
pub(super) fn submit(env: &Env, vars: &[(&str, String)], model: &str) -> Value {
    run(env, vars, &org_submit_args(model, &[])).ok().json()
}

/// The job id in an answer of `batch submit` or `batch retry`.
pub(super) fn job_id(job: &Value) -> String {
    job["job_id"].as_str().unwrap().to_string()
}

/// `batch collect <job>`, which must succeed; its answer.
pub(super) fn collect(env: &Env, vars: &[(&str, String)], job: &str) -> Value {
    run(env, vars, &["batch", "collect", job]).ok().json()
}

/// Asserts how many items an answer (of `collect`) counts as stored and as failed.
pub(super) fn assert_stored_failed(c: &Value, stored: i64, failed: i64) {
    assert_eq!(
        (c["stored"].as_i64(), c["failed"].as_i64()),
        (Some(stored), Some(failed)),
        "{c}"
    );
}

/// Asserts what a `collect` stored and failed, and the status of its job.
pub(super) fn assert_collected(c: &Value, stored: i64, failed: i64, status: &str) {
    assert_eq!(
        (
            c["stored"].as_i64(),
            c["failed"].as_i64(),
            c["status"].as_str()
        ),
        (Some(stored), Some(failed), Some(status)),
        "{c}"
    );
}

/// Asserts how many items of a job are in `status`.
pub(super) fn assert_items(env: &Env, vars: &[(&str, String)], job: &str, status: &str, n: usize) {
    let statuses = item_statuses(env, vars, job);
    assert_eq!(
        statuses.iter().filter(|(_, s)| s == status).count(),
        n,
        "{status}: {statuses:?}"
    );
}

/// [`setup`], a batch fake whose batches move only when the test says ([`Advance::Manual`]),
/// and every issue submitted to it as an OpenAI job: (env, fake, its OpenAI vars, job id).
pub(super) fn manual_openai_job() -> (Env, FakeBatches, Vec<(&'static str, String)>, String) {
    let env = setup();
    let fake = FakeBatches::start();
    fake.set_advance(Advance::Manual);
    let vars = fake.openai_env();
    let jid = job_id(&submit(&env, &vars, OPENAI));
    (env, fake, vars, jid)
}

pub(super) fn result_file(env: &Env, n: u64) -> std::path::PathBuf {
    env.data().join(format!(
        "results/{ORG}_{REPO}_issue_{n}_product-labeling.json"
    ))
}

/// Item statuses of a job by issue number.
pub(super) fn item_statuses(
    env: &Env,
    vars: &[(&str, String)],
    job: &str,
) -> Vec<(String, String)> {
    let d = run(env, vars, &["batch", "details", job]).ok().json();
    d["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["issue"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(super) fn with(
    a: &[(&'static str, String)],
    b: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut v = a.to_vec();
    v.extend(b.iter().map(|(k, x)| (*k, x.to_string())));
    v
}
