//! Batch creates whose answer was lost: the batch is looked up and adopted, never made twice;
//! orphans (batches no job records) are reported and, when asked, cancelled.

use super::*;

#[test]
fn a_create_whose_answer_is_lost_is_adopted_not_made_twice() {
    for provider in ["openai", "anthropic"] {
        let env = setup();
        let fake = FakeBatches::start();
        let (vars, model, create) = match provider {
            "openai" => (fake.openai_env(), OPENAI, "/v1/batches"),
            _ => (fake.anthropic_env(), ANTHROPIC, "/v1/messages/batches"),
        };
        // The server makes the batch, then a gateway answers 502.
        fake.lose_create_answers(1);
        let job = submit(&env, &vars, model);
        let jid = job_id(&job);
        let made: Vec<String> = fake
            .batches()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(made.len(), 1, "{provider}: provider batches {made:?}");
        assert_eq!(fake.count("POST", create), 1, "{provider}");
        assert_eq!(
            job["parts"][0]["provider_batch_id"],
            made[0].as_str(),
            "{provider}: {job}"
        );
        assert_ne!(job["status"], "preparing", "{provider}: {job}");
        // Nothing left for reconcile, no orphan; the results come back once.
        let rec = run(&env, &vars, &["batch", "reconcile"]).ok().json();
        assert_eq!(rec, json!([]), "{provider}");
        fake.finish_all();
        let c = collect(&env, &vars, &jid);
        assert_eq!(c["stored"], 4, "{provider}: {c}");
    }
}

#[test]
fn reconcile_reports_orphans_and_cancels_them_only_when_told() {
    let fake = FakeBatches::start();
    let vars = fake.openai_env();
    // A job of another data directory is an orphan here.
    let elsewhere = setup();
    let job = submit(&elsewhere, &vars, OPENAI);
    let batch = job["parts"][0]["provider_batch_id"]
        .as_str()
        .unwrap()
        .to_string();
    let env = Env::new();
    let rec = run(&env, &vars, &["batch", "reconcile"]).ok();
    let f = rec.json();
    assert_eq!(f[0]["kind"], "orphan", "{f}");
    assert_eq!(f[0]["provider_batch_id"], batch.as_str(), "{f}");
    rec.says("--cancel-orphans");
    assert_eq!(fake.count("POST", "/v1/batches/"), 0);
    // No terminal to ask on and no --yes: refused before anything is sent.
    let r = run(&env, &vars, &["batch", "reconcile", "--cancel-orphans"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.says("pass --yes");
    assert_eq!(fake.count("POST", "/v1/batches/"), 0);
    let r = run(
        &env,
        &vars,
        &["batch", "reconcile", "--cancel-orphans", "--yes"],
    )
    .ok()
    .json();
    assert_eq!(r[0]["kind"], "orphan_cancelled", "{r}");
    assert_eq!(
        fake.count("POST", &format!("/v1/batches/{batch}/cancel")),
        1
    );
    let status = fake
        .batches()
        .iter()
        .find(|b| b["id"] == batch.as_str())
        .map(|b| b["status"].clone());
    assert_eq!(status, Some(json!("cancelling")));
    // The job that owns it is untouched in its own data directory.
    assert_eq!(
        elsewhere.scalar("SELECT count(*) FROM batch_jobs"),
        1,
        "rows kept"
    );
}
