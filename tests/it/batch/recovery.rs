//! Batch jobs that go wrong: crashes between submit steps, provider faults on every call,
//! failed batches and items recorded with their reasons.

use std::sync::Arc;

use super::*;
use crate::fakes::batches::LineReply;

#[test]
fn a_crash_between_any_two_submit_steps_is_repaired_without_double_submission() {
    for (provider, step) in [
        ("openai", "rows"),
        ("openai", "input"),
        ("openai", "upload"),
        ("openai", "uploaded"),
        ("openai", "create"),
        ("anthropic", "rows"),
        ("anthropic", "input"),
        ("anthropic", "create"),
    ] {
        let env = setup();
        let fake = FakeBatches::start();
        let (vars, model, create) = match provider {
            "openai" => (fake.openai_env(), OPENAI, "/v1/batches"),
            _ => (fake.anthropic_env(), ANTHROPIC, "/v1/messages/batches"),
        };
        let crash = with(&vars, &[("GITHUB_ANALYSIS_BATCH_CRASH_AT", step)]);
        let r = run(&env, &crash, &org_submit_args(model, &[]));
        assert_ne!(r.code, 0, "{provider}/{step}: the crash hook did not fire");
        let hist = run(&env, &vars, &["batch", "history"]).ok().json();
        let jid = hist[0]["job_id"].as_str().unwrap().to_string();
        assert_eq!(hist[0]["status"], "preparing", "{provider}/{step}");
        let created_before = fake.count("POST", create);
        let s = run(&env, &vars, &["batch", "status", &jid]).ok().json();
        assert!(
            !["preparing", "failed"].contains(&s["status"].as_str().unwrap()),
            "{provider}/{step}: {s}"
        );
        assert_eq!(
            fake.count("POST", create),
            1,
            "{provider}/{step}: submitted {} times",
            fake.count("POST", create)
        );
        if step == "create" {
            assert_eq!(created_before, 1, "{provider}/{step}");
        }
        if provider == "openai" {
            assert_eq!(
                fake.count("POST", "/v1/files"),
                1,
                "{provider}/{step}: uploaded twice"
            );
        }
        // Reconcile finds nothing left to repair and no orphans.
        let rec = run(&env, &vars, &["batch", "reconcile"]).ok().json();
        assert_eq!(rec, json!([]), "{provider}/{step}");
        fake.finish_all();
        let c = collect(&env, &vars, &jid);
        assert_eq!(c["stored"], 4, "{provider}/{step}: {c}");
        assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 4);
    }
}

#[test]
fn provider_429_and_5xx_on_every_call_are_retried() {
    let env = setup();
    let fake = FakeBatches::start();
    fake.fail_next("POST", "/v1/files", 429, 2);
    fake.fail_next("POST", "/v1/batches", 500, 1);
    fake.fail_next("GET", "/v1/batches/", 503, 1);
    fake.fail_next("GET", "/v1/files/", 429, 1);
    let vars = fake.openai_env();
    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    assert_eq!(fake.count("POST", "/v1/files"), 3);
    assert_eq!(fake.count("POST", "/v1/batches"), 2);
    fake.finish_all();
    let c = collect(&env, &vars, &jid);
    assert_eq!(c["stored"], 4, "{c}");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s != 200).count(),
        5,
        "{statuses:?}"
    );
    // Anthropic: 529 on create and on the results download.
    let env = setup();
    let fake = FakeBatches::start();
    fake.fail_next("POST", "/v1/messages/batches", 529, 1);
    fake.fail_next("GET", "/v1/messages/batches/", 500, 1);
    let vars = fake.anthropic_env();
    let job = submit(&env, &vars, ANTHROPIC);
    fake.finish_all();
    let c = run(
        &env,
        &vars,
        &["batch", "collect", job["job_id"].as_str().unwrap()],
    )
    .ok()
    .json();
    assert_eq!(c["stored"], 4, "{c}");
    // A rejected key is a clear error and no job is left half-submitted silently.
    let env = setup();
    let bad = with(&fake.openai_env(), &[("OPENAI_API_KEY", "sk-wrong")]);
    let r = run(&env, &bad, &org_submit_args(OPENAI, &[]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("401") && !r.stderr.contains("sk-wrong"),
        "{}",
        r.stderr
    );
}

#[test]
fn failed_batches_and_all_failed_items_are_recorded_with_reasons() {
    // Validation failure of the whole batch (seen on a later poll). A full queue
    // (`token_limit_exceeded`) is not a failure but a wait: see `queue.rs`.
    let env = setup();
    let fake = FakeBatches::start();
    fake.reject_batches(
        "invalid_request",
        "The batch input file is not valid for this endpoint.",
    );
    let vars = fake.openai_env();
    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    let s = run(&env, &vars, &["batch", "status", &jid]).ok().json();
    assert_eq!(s["status"], "failed");
    assert!(
        s["parts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("invalid_request"),
        "{s}"
    );
    let c = collect(&env, &vars, &jid);
    assert_collected(&c, 0, 4, "failed");
    assert!(
        c["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not valid for this endpoint"),
        "{c}"
    );
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 0);

    // Every item failed: no output file, only an error file.
    let env = setup();
    let fake = FakeBatches::start();
    fake.set_script(Arc::new(|_| LineReply::HttpError {
        status: 500,
        message: "The server had an error".into(),
    }));
    let vars = fake.openai_env();
    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    fake.finish_all();
    let s = run(&env, &vars, &["batch", "status", &jid]).ok().json();
    assert_eq!(
        (
            s["parts"][0]["output_file_id"].as_str(),
            s["parts"][0]["status"].as_str()
        ),
        (None, Some("completed"))
    );
    let c = collect(&env, &vars, &jid);
    assert_stored_failed(&c, 0, 4);
    assert!(!env
        .data()
        .join(format!("batch/output/{jid}-0.jsonl"))
        .exists());
    assert!(env
        .data()
        .join(format!("batch/output/{jid}-0-errors.jsonl"))
        .is_file());
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 0);
    assert!(env
        .data()
        .join(format!(
            "results/failures/{ORG}_{REPO}_issue_1_product-labeling.json"
        ))
        .is_file());
}

#[test]
fn anthropic_requests_with_invalid_params_come_back_errored_and_fail_with_the_reason() {
    // Message batches check only the envelope at creation; each request's params are validated
    // like a Messages call and an invalid one comes back `errored` (here: more output tokens
    // than the model allows).
    let env = setup();
    let fake = FakeBatches::start();
    let vars = fake.anthropic_env();
    let job = run(
        &env,
        &vars,
        &org_submit_args(ANTHROPIC, &["--setting", "max_tokens=100000"]),
    )
    .ok()
    .json();
    let jid = job_id(&job);
    assert_eq!(fake.batches().len(), 1, "the envelope is valid: {job}");
    fake.finish_all();
    let c = collect(&env, &vars, &jid);
    assert_stored_failed(&c, 0, 4);
    for f in c["failures"].as_array().unwrap() {
        let why = f["reason"].as_str().unwrap();
        assert!(
            why.contains("max_tokens: 100000 > 64000") && why.contains("invalid_request_error"),
            "{f}"
        );
    }
    assert!(item_statuses(&env, &vars, &jid)
        .iter()
        .all(|(_, s)| s == "failed"));
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 0);
}
