//! What a job holds on to: its taxonomy's content (the file may move), its issues while it runs
//! (no second job, no concurrent submission, no second retry takes them), and its rows when
//! the provider would not cancel it.

use std::sync::Arc;

use super::*;
use crate::fakes::batches::{default_reply, Advance, LineReply};
use crate::support::AREAS_TAXONOMY;

#[test]
fn a_job_keeps_its_taxonomy_so_status_collect_and_cancel_work_after_the_file_moved() {
    let env = setup();
    let fake = FakeBatches::start();
    let vars = fake.openai_env();
    let t = env.write_file("areas.toml", AREAS_TAXONOMY);
    let tax = t.to_str().unwrap().to_string();
    let args = org_submit_args(OPENAI, &["--taxonomy", &tax]);
    let job = run(&env, &vars, &args).ok().json();
    let jid = job_id(&job);
    std::fs::rename(&t, env.dir.path().join("moved.toml")).unwrap();
    run(&env, &vars, &["batch", "status", &jid]).ok();
    fake.finish_all();
    let c = collect(&env, &vars, &jid);
    assert_eq!(c["stored"], 4, "{c}");
    // Validated against the job's own taxonomy: the custom labels are accepted.
    let got = env.rows(
        "SELECT issue_id, value FROM ai_recommendations WHERE kind = 'label' ORDER BY issue_id, value",
    );
    assert_eq!(
        got,
        vec![
            json!({"issue_id": id(3), "value": "area::install"}),
            json!({"issue_id": id(4), "value": "area::billing"})
        ]
    );
    // Cancel too (a second job, whose file is then deleted).
    fake.set_advance(Advance::Manual);
    env.write_file("areas.toml", AREAS_TAXONOMY);
    let second = run(&env, &vars, &args).ok().json();
    std::fs::remove_file(&t).unwrap();
    let c = run(
        &env,
        &vars,
        &["batch", "cancel", second["job_id"].as_str().unwrap()],
    )
    .ok()
    .json();
    assert_eq!(c["status"], "cancelling", "{c}");
}

#[test]
fn issues_in_a_running_job_are_not_selected_again_while_it_runs() {
    let (env, fake, vars, jid) = manual_openai_job();
    let sql = "SELECT id FROM issues";
    for extra in [
        vec!["--org", ORG],
        vec!["--missing-analysis"],
        vec!["--sql", sql],
    ] {
        let mut a = extra.clone();
        a.extend(["--model", OPENAI]);
        let r = run(&env, &vars, &submit_args(&a));
        assert_eq!(r.code, 1, "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("no stored issues match the selection"),
            "{extra:?}: {}",
            r.stderr
        );
    }
    assert_eq!(fake.batches().len(), 1);
    // Once it has ended and been collected, the issues can be submitted again.
    fake.finish_all();
    run(&env, &vars, &["batch", "collect", &jid]).ok();
    submit(&env, &vars, OPENAI);
    assert_eq!(fake.batches().len(), 2);
}

#[test]
fn two_submissions_at_once_never_take_the_same_issue() {
    let env = setup();
    let fake = FakeBatches::start();
    fake.set_advance(Advance::Manual);
    let vars = fake.openai_env();
    let go = env.dir.path().join("go");
    let paused = with(
        &vars,
        &[(
            "GITHUB_ANALYSIS_BATCH_PAUSE_AT",
            &format!("selected:{}", go.display()),
        )],
    );
    let args = submit_args(&["--missing-analysis", "--model", OPENAI]);
    let first = std::thread::scope(|s| {
        // The first selects its issues, then waits before claiming them...
        let first = s.spawn(|| run(&env, &paused, &args));
        let waiting = go.with_extension("waiting");
        for _ in 0..1500 {
            if waiting.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(waiting.exists(), "the first submission never paused");
        // ...while the second selects the same issues and submits them.
        let second = run(&env, &vars, &args).ok().json();
        assert_eq!(second["issues"], 4, "{second}");
        std::fs::write(&go, "").unwrap();
        first.join().unwrap()
    });
    first.fails_with("already in a running job");
    assert_eq!(fake.batches().len(), 1, "one provider batch");
    assert_eq!(env.scalar("SELECT count(*) FROM batch_items"), 4);
}

#[test]
fn retrying_a_job_twice_never_submits_its_items_twice() {
    let env = setup();
    let fake = FakeBatches::start();
    let vars = fake.openai_env();
    fake.set_script(Arc::new(|c| {
        if c.issue
            .as_deref()
            .is_some_and(|i| i.ends_with("#1") || i.ends_with("#2"))
        {
            LineReply::HttpError {
                status: 500,
                message: "The server had an error".into(),
            }
        } else {
            default_reply(c)
        }
    }));
    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    fake.finish_all();
    let c = collect(&env, &vars, &jid);
    assert_stored_failed(&c, 2, 2);
    fake.set_script(Arc::new(default_reply));
    let retry = run(&env, &vars, &["batch", "retry", &jid]).ok().json();
    assert_eq!(retry["issues"], 2);
    fake.finish_all();
    let rid = retry["job_id"].as_str().unwrap();
    run(&env, &vars, &["batch", "collect", rid]).ok();
    // The retry has ended: a second retry of the first job would resubmit what it answered.
    let again = run(&env, &vars, &["batch", "retry", &jid]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again.stderr.contains("already retried by job") && again.stderr.contains(rid),
        "{}",
        again.stderr
    );
    assert_eq!(fake.batches().len(), 2);
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 4);
}

#[test]
fn remove_force_keeps_the_rows_when_the_provider_cancel_fails() {
    let (env, fake, vars, jid) = manual_openai_job();
    fake.fail_next("POST", "/v1/batches/", 403, 1);
    let r = run(&env, &vars, &["batch", "remove", &jid, "--force"]);
    r.fails_with("was not removed");
    let hist = run(&env, &vars, &["batch", "history"]).ok().json();
    assert_eq!(hist[0]["job_id"], jid.as_str(), "the rows are kept");
    assert_eq!(env.scalar("SELECT count(*) FROM batch_items"), 4);
    // Once the cancel goes through, the job can go.
    run(&env, &vars, &["batch", "remove", &jid, "--force"]).ok();
    assert_eq!(env.scalar("SELECT count(*) FROM batch_jobs"), 0);
    assert!(fake.batches().iter().all(|b| b["status"] == "cancelling"));
}
