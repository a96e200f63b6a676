//! CLI tests of how processing meets the providers' limits and answers: spent credit or quota
//! and unknown models stop the run at once, keeping the finished work; harmless slips in an
//! answer are normalised and recorded, in real time and in batch mode alike.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::fakes::anthropic::{self as fa, FakeAnthropic};
use crate::fakes::batches::{FakeBatches, LineReply};
use crate::fakes::openai::{self as fo, FakeOpenAi};
use crate::process::{id, result_file, run_model, setup, ANTHROPIC, OPENAI, ORG};
use crate::support::{batch_submit_args, read_json};

/// Stored results, by issue id.
fn stored_ids(env: &crate::support::Env) -> Vec<String> {
    env.rows("SELECT issue_id FROM ai_results ORDER BY issue_id")
        .iter()
        .map(|r| r["issue_id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn spent_anthropic_credit_stops_the_run_at_once_and_keeps_finished_work() {
    let env = setup();
    // The real service answers 400 (not 402) once the prepaid credit is spent.
    let fake = FakeAnthropic::with_script(fa::after(2, fa::Reply::CreditTooLow));
    let r = run_model(&env, &fake.env(), ANTHROPIC, &["--concurrency", "1"]);
    r.fails_with("credit balance is too low");
    r.says("add credit");
    // Two answered, one refused, and nothing sent after the refusal.
    assert_eq!(fake.requests().len(), 3, "{}", r.stderr);
    assert_eq!(stored_ids(&env), vec![id(1), id(2)]);
    let s = r.json();
    assert_eq!(
        (s["processed"].as_u64(), s["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(s["not_started"], 1);
    // The next run (credit topped up) sends only what is missing.
    let fresh = FakeAnthropic::start();
    run_model(&env, &fresh.env(), ANTHROPIC, &["--concurrency", "1"]).ok();
    assert_eq!(fresh.requests().len(), 2);
    assert_eq!(stored_ids(&env).len(), 4);
}

#[test]
fn anthropic_billing_errors_stop_the_run() {
    let env = setup();
    let fake = FakeAnthropic::with_script(fa::after(1, fa::Reply::Billing));
    let r = run_model(&env, &fake.env(), ANTHROPIC, &["--concurrency", "2"]);
    r.fails_with("billing_error");
    // At most the requests already in flight when the first refusal came back.
    assert!(fake.requests().len() <= 3, "{}", fake.requests().len());
    assert_eq!(stored_ids(&env).len(), 1);
}

#[test]
fn spent_openai_quota_or_credit_stops_the_run_at_once() {
    for (reply, needle) in [
        (fo::Reply::QuotaExceeded, "insufficient_quota"),
        (fo::Reply::PaymentRequired, "HTTP 402"),
    ] {
        let env = setup();
        let fake = FakeOpenAi::with_script(fo::after(1, reply));
        let r = run_model(&env, &fake.env(), OPENAI, &["--concurrency", "1"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
        r.says("add credit");
        // The refusal is not retried and nothing starts after it.
        assert_eq!(fake.requests().len(), 2, "{needle}");
        assert_eq!(stored_ids(&env), vec![id(1)]);
        assert_eq!(r.json()["not_started"], 2);
    }
}

#[test]
fn an_unknown_model_stops_the_run_with_a_clear_message() {
    let env = setup();
    let openai = FakeOpenAi::start();
    let anthropic = FakeAnthropic::start();
    for (vars, model, fake_requests) in [
        (
            openai.env(),
            "openai:gpt-9-turbo",
            Box::new(|| openai.requests().len()) as Box<dyn Fn() -> usize>,
        ),
        (
            anthropic.env(),
            "anthropic:claude-sonnet-9",
            Box::new(|| anthropic.requests().len()) as Box<dyn Fn() -> usize>,
        ),
    ] {
        let r = run_model(&env, &vars, model, &["--concurrency", "1"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        let name = model.split_once(':').unwrap().1;
        assert!(
            r.stderr
                .contains(&format!("the provider does not know model `{name}`")),
            "{}",
            r.stderr
        );
        r.says("HTTP 404");
        assert_eq!(fake_requests(), 1, "{model}: one refusal, nothing after it");
        assert_eq!(r.json()["not_started"], 3);
        assert!(stored_ids(&env).is_empty());
    }
}

/// An answer with two slips: a label spelled with other case and spaces, and a label twice.
fn sloppy_answer() -> Value {
    json!({
        "recommended_labels": [
            {"label": " Product::KOTS", "confidence": 0.6, "reasoning": "kotsadm"},
            {"label": "product::troubleshoot", "confidence": 0.5, "reasoning": "bundle"},
            {"label": "product::kots", "confidence": 0.9, "reasoning": "kubectl kots"}
        ],
        "current_labels_assessment": [],
        "confidence": 0.8,
        "summary": "s",
        "reasoning": "r"
    })
}

/// The stored analysis of issue 1 is the normalised answer, and says what was normalised.
fn assert_normalised(env: &crate::support::Env, mode: &str) {
    let doc: Value = read_json(result_file(env, 1));
    let a = &doc["analysis"];
    let labels: Vec<(&str, f64)> = a["recommended_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["label"].as_str().unwrap(),
                r["confidence"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        vec![("product::kots", 0.9), ("product::troubleshoot", 0.5)],
        "{mode}"
    );
    let notes = a["normalized"].as_array().expect("normalized is recorded");
    assert_eq!(notes.len(), 2, "{mode}: {notes:?}");
    let rows = env.rows(&format!(
        "SELECT json_array_length(result->'$.analysis.normalized') AS n, mode FROM ai_results \
         WHERE issue_id = '{}'",
        id(1)
    ));
    assert_eq!(rows[0]["n"], 2, "{mode}");
    assert_eq!(rows[0]["mode"], mode);
    let recs = env.rows(&format!(
        "SELECT count(*) AS n FROM ai_recommendations WHERE issue_id = '{}' AND kind = 'label'",
        id(1)
    ));
    assert_eq!(recs[0]["n"], 2, "{mode}: one row per distinct label");
}

#[test]
fn harmless_slips_in_a_real_time_answer_are_normalised_and_recorded() {
    let env = setup();
    let fake = FakeAnthropic::with_script(Arc::new(|c: &fa::Call| {
        if c.issue.as_deref() == Some(id(1).as_str()) {
            fa::Reply::Tool(sloppy_answer())
        } else {
            fa::Reply::Tool(fa::default_answer(c))
        }
    }));
    let r = run_model(&env, &fake.env(), ANTHROPIC, &["--concurrency", "1"]).ok();
    // Accepted as it came: no repair request paid for, no failure.
    assert_eq!(fake.requests_for(&id(1)).len(), 1);
    assert_eq!(r.json()["failed"], 0);
    assert_normalised(&env, "realtime");
}

#[test]
fn harmless_slips_in_a_batch_answer_are_normalised_and_recorded() {
    let env = setup();
    let fake = FakeBatches::start();
    fake.set_script(Arc::new(|c| match c.issue.as_deref() {
        Some(i) if i.ends_with("#1") => LineReply::Answer(sloppy_answer()),
        _ => crate::fakes::batches::default_reply(c),
    }));
    let vars = fake.openai_env();
    let job = env
        .run_json(&vars, &batch_submit_args(ORG, OPENAI, &[]))
        .ok()
        .json();
    let jid = job["job_id"].as_str().unwrap().to_string();
    fake.finish_all();
    env.run_json(&vars, &["batch", "status", &jid]).ok();
    let c = env.run_json(&vars, &["batch", "collect", &jid]).ok().json();
    assert_eq!(
        (c["stored"].as_i64(), c["failed"].as_i64()),
        (Some(4), Some(0)),
        "{c}"
    );
    assert_normalised(&env, "batch");
}
