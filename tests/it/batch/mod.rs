//! CLI tests of `batch …` against protocol-faithful fakes of the OpenAI Batch API and Anthropic
//! Message Batches (tests/it/fakes/batches/), and with the local executor: submission
//! order and splitting, status mapping, collection (shuffled output, error files, validation
//! failures, expiry, cancellation), idempotence, retries, faults and crashes between steps.
//! This file holds the shared fixtures; the tests are in the submodules.

use crate::fakes::batches::FakeBatches;
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

pub(super) fn submit(env: &Env, vars: &[(&str, String)], model: &str) -> Value {
    run(
        env,
        vars,
        &[
            "batch",
            "submit",
            "product-labeling",
            "--org",
            ORG,
            "--model",
            model,
        ],
    )
    .ok()
    .json()
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
