//! `demo` (the README's first command) end to end, twice on one data directory, and
//! `process-query … --batch-mode --wait` against the batch fake: it polls the provider job to
//! its end, collects it and says what failed.

use std::sync::Arc;

use serde_json::json;

use crate::fakes::batches::{default_reply, Advance, FakeBatches, LineReply};
use crate::support::{batch_wait_args, env_with_issues, files_in, Env};

#[test]
fn demo_labels_the_newer_sample_issues_and_a_second_run_duplicates_nothing() {
    let env = Env::new();
    let out = env.run(&["demo"]).ok().stdout;
    for step in ["== 1/6", "== 2/6", "== 3/6", "== 4/6", "== 5/6", "== 6/6"] {
        assert!(out.contains(step), "{step} missing: {out}");
    }
    assert!(
        out.contains("macro-F1"),
        "the demo prints measured quality: {out}"
    );
    let issues = env.scalar("SELECT count(*) FROM issues");
    assert_eq!(issues, json!(400), "the bundled samples");
    // The newer issues labelled once, in batch mode, by one local job that ended collected.
    let jobs = env.rows("SELECT job_id, provider, status, issues_count FROM batch_jobs");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (&jobs[0]["provider"], &jobs[0]["status"]),
        (&json!("local"), &json!("collected")),
    );
    let labelled = jobs[0]["issues_count"].as_i64().unwrap();
    assert!(labelled > 0 && labelled < 400, "{labelled}");
    let results = env.rows(
        "SELECT mode, processor, count(*) AS n, count(DISTINCT issue_id) AS issues
         FROM ai_results GROUP BY ALL",
    );
    assert_eq!(
        results,
        vec![
            json!({"mode": "batch", "processor": "product-labeling", "n": labelled, "issues": labelled})
        ]
    );
    assert_eq!(files_in(&env.data().join("results")).len() as i64, labelled);
    // Only issues newer than every training issue were labelled: the model is never scored on
    // what it learnt from.
    let trained =
        "SELECT unnest(from_json(training_ids, '[\"VARCHAR\"]')) AS id FROM trained_models";
    let overlap = env.scalar(&format!(
        "SELECT count(*) FROM ai_results WHERE issue_id IN ({trained})"
    ));
    assert_eq!(overlap, json!(0), "results on training issues");
    let older = env.scalar(&format!(
        "SELECT count(*) FROM ai_results r JOIN issues i ON i.id = r.issue_id
         WHERE i.number <= (SELECT max(j.number) FROM issues j WHERE j.id IN ({trained}))"
    ));
    assert_eq!(
        older,
        json!(0),
        "results on issues older than the newest training issue"
    );

    // The same command again on the same data: it relabels the same issues in a new job,
    // replacing their results — nothing is imported twice, no result is duplicated.
    let out2 = env.run(&["demo"]).ok().stdout;
    assert!(out2.contains("== 6/6"), "{out2}");
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), json!(400));
    assert_eq!(
        env.scalar("SELECT count(*) FROM ai_results"),
        json!(labelled)
    );
    assert_eq!(env.scalar("SELECT count(*) FROM batch_jobs"), json!(2));
    assert_eq!(files_in(&env.data().join("results")).len() as i64, labelled);
    let settled = env.scalar("SELECT count(*) FROM batch_items WHERE status <> 'completed'");
    assert_eq!(settled, json!(0));
}

const ORG: &str = "replicatedhq";
const REPO: &str = "wait";

fn setup(n: u64) -> Env {
    env_with_issues(ORG, REPO, n, |i| {
        (
            format!("kots upgrade {i} fails"),
            "The kots admin console is blank after the upgrade.".into(),
        )
    })
}

fn wait_args(model: &str) -> Vec<&str> {
    batch_wait_args(model, "0.01", &[])
}

#[test]
fn process_query_wait_polls_a_provider_job_to_its_end_and_collects_it() {
    let env = setup(5);
    let fake = FakeBatches::start();
    // Each poll moves the batch one state on: validating → in_progress → finalizing → done.
    fake.set_advance(Advance::OnPoll);
    let vars = fake.openai_env();
    let r = env.run_json(&vars, &wait_args("openai:gpt-4o-mini")).ok();
    let summary = r.json();
    assert_eq!(summary["status"], "collected", "{summary}");
    assert_eq!(
        (summary["completed"].as_i64(), summary["failed"].as_i64()),
        (Some(5), Some(0)),
        "{summary}"
    );
    // It waited: the batch was polled until it ended, and collected in the same run.
    assert!(
        fake.count("GET", "/v1/batches/") >= 3,
        "{:?}",
        fake.requests()
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM ai_results WHERE mode = 'batch'"),
        json!(5)
    );
    let job = summary["job_id"].as_str().unwrap();
    assert_eq!(
        env.scalar(&format!(
            "SELECT status FROM batch_jobs WHERE job_id = '{job}'"
        )),
        json!("collected")
    );
    // A second run selects nothing and submits nothing.
    let batches_before = fake.batches().len();
    let again = env.run_json(&vars, &wait_args("openai:gpt-4o-mini"));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(fake.batches().len(), batches_before);
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), json!(5));
}

#[test]
fn process_query_wait_reports_failed_items_and_exits_1() {
    let env = setup(4);
    let fake = FakeBatches::start();
    fake.set_advance(Advance::OnPoll);
    // Issue 3's answer fails validation; the others are fine.
    fake.set_script(Arc::new(|c| {
        if c.issue.as_deref().is_some_and(|i| i.ends_with("#3")) {
            LineReply::Invalid(
                json!({"recommended_labels": [{"label": "nope", "confidence": 2.0,
                "reasoning": "x"}], "current_labels_assessment": [], "confidence": 0.5,
                "summary": "s", "reasoning": "r"}),
            )
        } else {
            default_reply(c)
        }
    }));
    let r = env.run_json(&fake.openai_env(), &wait_args("openai:gpt-4o-mini"));
    r.fails_with(&format!("{ORG}/{REPO}#3")).says("batch retry");
    assert_eq!(
        env.scalar("SELECT count(*) FROM ai_results WHERE mode = 'batch'"),
        json!(3)
    );
    let failed = env.scalar("SELECT issue_id FROM batch_items WHERE status = 'failed'");
    assert_eq!(failed, json!(format!("{ORG}/{REPO}#3")));
}
