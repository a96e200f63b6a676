//! Batch jobs while they run: cancel and remove, expiry, killed local jobs, servers without a
//! batch API, submissions that gave up, ambiguous lost batches.

use super::*;
use crate::fakes::batches::{Advance, End};
use crate::fakes::openai::FakeOpenAi;

#[test]
fn cancel_keeps_partial_results_and_remove_keeps_stored_results() {
    let (env, fake, vars, jid) = manual_openai_job();
    let refused = run(&env, &vars, &["batch", "remove", &jid]);
    refused.fails_with("--force");
    let c = run(&env, &vars, &["batch", "cancel", &jid]).ok().json();
    assert_eq!(c["status"], "cancelling");
    assert_eq!(fake.count("POST", "/v1/batches/"), 1);
    fake.finish_all();
    let c = collect(&env, &vars, &jid);
    assert_stored_failed(&c, 1, 3);
    assert_items(&env, &vars, &jid, "cancelled", 3);
    let again = run(&env, &vars, &["batch", "cancel", &jid]);
    assert_eq!(again.code, 1);
    let removed = run(&env, &vars, &["batch", "remove", &jid]).ok().json();
    assert!(
        removed["removed_files"].as_array().unwrap().len() >= 2,
        "{removed}"
    );
    assert_eq!(
        run(&env, &vars, &["batch", "history"]).ok().json(),
        json!([])
    );
    assert_eq!(env.scalar("SELECT count(*) FROM batch_items"), 0);
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 1);
    assert!(std::fs::read_dir(env.data().join("batch/input"))
        .unwrap()
        .next()
        .is_none());

    // --force removes an active job after cancelling it at the provider.
    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    let forced = run(&env, &vars, &["batch", "remove", &jid, "--force"])
        .ok()
        .json();
    assert_eq!(forced["removed_job"], jid.as_str());
    assert_eq!(fake.count("POST", "/v1/batches/"), 2);
    // The provider still has both removed jobs' batches, carrying their job ids: reconcile
    // reports them as orphans (and repairs nothing).
    let rec = run(&env, &vars, &["batch", "reconcile"]).ok().json();
    let orphans: Vec<&str> = rec
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "orphan")
        .map(|f| f["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(orphans.len(), 2, "{rec}");
    assert!(orphans.contains(&jid.as_str()), "{rec}");
}

#[test]
fn openai_expired_job_keeps_partial_results() {
    let env = setup();
    let fake = FakeBatches::start();
    fake.set_end(End::Expired { processed: 3 });
    let vars = fake.openai_env();
    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    fake.finish_all();
    let s = run(&env, &vars, &["batch", "status", &jid]).ok().json();
    assert_eq!(s["status"], "expired");
    let c = collect(&env, &vars, &jid);
    assert_stored_failed(&c, 3, 1);
    assert!(
        c["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("batch_expired"),
        "{c}"
    );
    assert_items(&env, &vars, &jid, "expired", 1);
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 3);
}

#[test]
fn a_killed_local_job_resumes_with_its_unfinished_items() {
    let env = setup();
    let r = run(
        &env,
        &[("GITHUB_ANALYSIS_BATCH_CRASH_AT", "local".to_string())],
        &org_submit_args("rules", &[]),
    );
    assert_ne!(r.code, 0);
    let hist = run(&env, &[], &["batch", "history"]).ok().json();
    let jid = hist[0]["job_id"].as_str().unwrap().to_string();
    assert_eq!(hist[0]["status"], "in_progress");
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 2);
    assert_eq!(
        run(&env, &[], &["batch", "list"]).ok().json()[0]["job_id"],
        jid.as_str()
    );
    let s = run(&env, &[], &["batch", "status", &jid]).ok().json();
    assert_eq!(
        (s["status"].as_str(), s["completed"].as_i64()),
        (Some("collected"), Some(4)),
        "{s}"
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM ai_results WHERE mode = 'batch'"),
        4
    );
}

#[test]
fn a_server_without_a_batch_api_runs_the_job_locally() {
    let env = setup();
    let chat = FakeOpenAi::start();
    let job = submit(&env, &chat.env(), OPENAI);
    assert_eq!(
        (job["provider"].as_str(), job["status"].as_str()),
        (Some("local"), Some("collected")),
        "{job}"
    );
    assert_eq!(job["completed"], 4);
    let r = env.rows("SELECT mode, provider, count(*) AS n FROM ai_results GROUP BY ALL");
    assert_eq!(
        r,
        vec![json!({"mode": "batch", "provider": "openai", "n": 4})]
    );
}

#[test]
fn anthropic_cancel_ends_with_partial_results_and_cancelled_items() {
    let env = setup();
    let fake = FakeBatches::start();
    fake.set_advance(Advance::Manual);
    let vars = fake.anthropic_env();
    let job = submit(&env, &vars, ANTHROPIC);
    let jid = job_id(&job);
    let c = run(&env, &vars, &["batch", "cancel", &jid[..7]])
        .ok()
        .json();
    assert_eq!(c["status"], "cancelling");
    assert_eq!(fake.count("POST", "/v1/messages/batches/"), 1);
    fake.finish_all();
    let s = run(&env, &vars, &["batch", "status", &jid]).ok().json();
    assert_eq!(s["status"], "cancelled");
    let c = collect(&env, &vars, &jid);
    assert_stored_failed(&c, 1, 3);
    assert_items(&env, &vars, &jid, "cancelled", 3);
    // A cancelled job can be retried: only its cancelled items.
    let retry = run(&env, &vars, &["batch", "retry", &jid]).ok().json();
    assert_eq!(retry["issues"], 3);
}

#[test]
fn a_submission_that_gave_up_is_finished_by_status_without_uploading_again() {
    let env = setup();
    let fake = FakeBatches::start();
    // Six attempts (one try + five retries) all rate limited: the submit gives up.
    fake.fail_next("POST", "/v1/batches", 429, 10);
    let vars = fake.openai_env();
    let r = run(&env, &vars, &org_submit_args(OPENAI, &[]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("could not be fully submitted") && r.stderr.contains("429"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.count("POST", "/v1/batches"), 6);
    let hist = run(&env, &vars, &["batch", "history"]).ok().json();
    let jid = hist[0]["job_id"].as_str().unwrap().to_string();
    assert_eq!(hist[0]["status"], "preparing");
    let d = run(&env, &vars, &["batch", "details", &jid]).ok().json();
    assert!(d["error"].as_str().unwrap().contains("429"), "{d}");
    assert_eq!(d["parts"][0]["status"], "uploaded", "{d}");
    // The next status looks for the batch first (none), reuses the upload, and creates it.
    let s = run(&env, &vars, &["batch", "status", &jid]).ok().json();
    assert_eq!(s["parts"][0]["status"], "in_progress", "{s}");
    assert_eq!(fake.count("POST", "/v1/files"), 1);
    assert_eq!(fake.count("POST", "/v1/batches"), 11);
    assert_eq!(fake.batches().len(), 1);
}

#[test]
fn an_ambiguous_lost_anthropic_batch_is_reported_not_resubmitted() {
    // Two jobs of the same size crash right after creating their message batches. Message
    // batches carry no metadata, so either batch could be either job's: nothing is guessed.
    let env = setup();
    let fake = FakeBatches::start();
    let vars = fake.anthropic_env();
    let crash = with(&vars, &[("GITHUB_ANALYSIS_BATCH_CRASH_AT", "create")]);
    for sql in [
        "SELECT id FROM issues WHERE number <= 2",
        "SELECT id FROM issues WHERE number > 2",
    ] {
        let args = [
            "batch",
            "submit",
            "product-labeling",
            "--sql",
            sql,
            "--model",
            ANTHROPIC,
        ];
        assert_ne!(run(&env, &crash, &args).code, 0);
    }
    assert_eq!(fake.count("POST", "/v1/messages/batches"), 2);
    let hist = run(&env, &vars, &["batch", "history"]).ok().json();
    let jid = hist[0]["job_id"].as_str().unwrap().to_string();
    let r = run(&env, &vars, &["batch", "status", &jid]);
    r.fails_with("may have been created as any of 2");
    let rec = run(&env, &vars, &["batch", "reconcile"]);
    assert_eq!(rec.code, 1, "{}", rec.stderr);
    assert_eq!(
        rec.json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "error")
            .count(),
        2
    );
    assert_eq!(
        fake.count("POST", "/v1/messages/batches"),
        2,
        "nothing may be submitted twice"
    );
    // Cancelling settles the job locally and names the candidate batches to check.
    let c = run(&env, &vars, &["batch", "cancel", &jid]).ok();
    c.says("cancel it at the provider");
    assert_eq!(c.json()["status"], "cancelled");
}
