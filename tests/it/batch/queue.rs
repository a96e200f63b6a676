//! The provider's queue limits: a part refused for its request count is re-split (and the cap
//! learned for later jobs); parts refused because the model's enqueued-token queue is full wait
//! as `queued` and are submitted by `batch status` as earlier batches end.

use std::collections::HashMap;

use super::*;

#[test]
fn a_part_refused_for_its_request_count_is_split_and_the_cap_learned() {
    let env = setup();
    let fake = FakeBatches::start();
    // A server whose per-batch cap (2) is below ours (50,000).
    fake.set_max_requests(2);
    let vars = fake.openai_env();
    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    assert_ne!(job["status"], "preparing", "{job}");
    let parts = job["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{job}");
    for p in parts {
        assert!(p["provider_batch_id"].is_string(), "{p}");
        assert_eq!(p["requests"], 2, "{p}");
    }
    // One refused create, then one per piece.
    assert_eq!(fake.count("POST", "/v1/batches"), 3);
    assert_eq!(fake.batches().len(), 2);
    fake.finish_all();
    let c = collect(&env, &vars, &jid);
    assert_eq!(c["stored"], 4, "{c}");
    // The next job of the model is split to the learned cap from the start (its dry run too).
    let dry = run(&env, &vars, &org_submit_args(OPENAI, &["--dry-run"]))
        .ok()
        .json();
    assert_eq!(dry["parts"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(dry["caps"]["max_requests"], 2, "{dry}");
    let again = submit(&env, &vars, OPENAI);
    assert_eq!(again["parts"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(fake.count("POST", "/v1/batches"), 5, "no refused create");
}

#[test]
fn parts_beyond_the_enqueued_token_limit_wait_and_go_as_earlier_ones_end() {
    let env = setup();
    let fake = FakeBatches::start();
    // The organisation's queue holds two requests of the model at a time; the job has four
    // one-request parts.
    fake.set_token_limit(2 * crate::fakes::batches::TOKENS_PER_LINE + 500);
    let vars = with(
        &fake.openai_env(),
        &[("GITHUB_ANALYSIS_OPENAI_BATCH_MAX_REQUESTS", "1")],
    );
    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    assert_eq!(job["parts"].as_array().unwrap().len(), 4, "{job}");
    let mut seen = Vec::new();
    let mut last = Value::Null;
    for _ in 0..12 {
        last = run(&env, &vars, &["batch", "status", &jid]).ok().json();
        let parts: Vec<String> = last["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["status"].as_str().unwrap().to_string())
            .collect();
        seen.push((last["status"].as_str().unwrap().to_string(), parts));
        if last["status"] == "completed" {
            break;
        }
        fake.finish_all();
    }
    assert_eq!(last["status"], "completed", "{seen:?}");
    assert!(
        seen.iter().all(|(job, _)| job != "preparing"),
        "the job never sits in preparing: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(_, parts)| parts.iter().any(|p| p == "queued")),
        "refused parts wait as queued: {seen:?}"
    );
    // Every issue was answered exactly once, by a batch that ran.
    let mut answered: HashMap<String, usize> = HashMap::new();
    for b in fake.batches() {
        if b["status"] == "completed" {
            for l in fake.input_lines(b["id"].as_str().unwrap()) {
                *answered
                    .entry(l["custom_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(answered.len(), 4, "{answered:?}");
    assert!(answered.values().all(|n| *n == 1), "{answered:?}");
    let c = collect(&env, &vars, &jid);
    assert_stored_failed(&c, 4, 0);
    // The limit is learned: the next job's parts queue instead of being refused.
    let limit = env.rows("SELECT enqueued_tokens FROM batch_limits");
    assert_eq!(limit, vec![json!({"enqueued_tokens": 2500})]);
}
