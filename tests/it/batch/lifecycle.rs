//! Batch jobs end to end: local `rules` jobs, OpenAI jobs split into parts, polled, collected
//! idempotently and retried, byte-identical request lines, Anthropic expiry.

use std::sync::Arc;

use super::*;
use crate::fakes::batches::{Advance, End, LineReply};
use crate::fakes::openai::FakeOpenAi;
use crate::support::{labeling_args, read_json};

#[test]
fn rules_jobs_run_locally_and_store_batch_results() {
    let env = setup();
    let job = submit(&env, &[], "rules");
    let jid = job_id(&job);
    assert_eq!(
        (job["provider"].as_str(), job["status"].as_str()),
        (Some("local"), Some("collected"))
    );
    assert_eq!(
        (job["completed"].as_i64(), job["failed"].as_i64()),
        (Some(4), Some(0))
    );
    let r = env.rows("SELECT mode, batch_job_id, count(*) AS n FROM ai_results GROUP BY ALL");
    assert_eq!(
        r,
        vec![json!({"mode": "batch", "batch_job_id": jid, "n": 4})]
    );
    let doc: Value = read_json(result_file(&env, 1));
    assert_eq!(doc["processor"]["mode"], "batch");
    assert_eq!(doc["processor"]["batch_job_id"], jid.as_str());
    // Prefix lookups, listings, idempotent collect.
    let status = run(&env, &[], &["batch", "status", &jid[..4]]).ok().json();
    assert_eq!(status["status"], "collected");
    assert_eq!(run(&env, &[], &["batch", "list"]).ok().json(), json!([]));
    let hist = run(&env, &[], &["batch", "history"]).ok().json();
    assert_eq!(hist[0]["job_id"], jid.as_str());
    let c = run(&env, &[], &["batch", "collect", &jid[..6]]).ok().json();
    assert_stored_failed(&c, 0, 0);
    assert!(item_statuses(&env, &[], &jid)
        .iter()
        .all(|(_, s)| s == "completed"));
    // Unknown and empty ids are user errors.
    let bad = run(&env, &[], &["batch", "status", "zzzz"]);
    bad.fails_with("no batch job matches");
    // A selection that matches nothing, and no selection at all, are user errors.
    let none = run(
        &env,
        &[],
        &["batch", "submit", "product-labeling", "--model", "rules"],
    );
    assert_eq!(none.code, 1, "{}", none.stderr);
}

#[test]
fn openai_job_split_polled_collected_idempotently_and_retried() {
    let env = setup();
    let fake = FakeBatches::start();
    // #2: an answer with a label outside the taxonomy; #4: the inner request fails.
    fake.set_script(Arc::new(|c| match c.issue.as_deref() {
        Some(i) if i.ends_with("#2") => LineReply::Invalid(json!({
            "recommended_labels": [{"label": "product::nonexistent", "confidence": 0.9, "reasoning": "r"}],
            "current_labels_assessment": [], "confidence": 0.9, "summary": "s", "reasoning": "r"})),
        Some(i) if i.ends_with("#4") => LineReply::HttpError { status: 400, message: "max_completion_tokens is too large".into() },
        _ => crate::fakes::batches::default_reply(c),
    }));
    let vars = with(
        &fake.openai_env(),
        &[("GITHUB_ANALYSIS_OPENAI_BATCH_MAX_REQUESTS", "3")],
    );
    // Dry runs (with one setting): the split plan and an estimate, nothing sent or recorded.
    let dry_run = |setting: (&'static str, &str)| {
        let vars = with(&fake.openai_env(), &[setting]);
        run(&env, &vars, &org_submit_args(OPENAI, &["--dry-run"]))
            .ok()
            .json()
    };
    let dry = dry_run(("GITHUB_ANALYSIS_OPENAI_BATCH_MAX_REQUESTS", "3"));
    assert_eq!(dry["parts"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(
        (
            dry["parts"][0]["requests"].as_i64(),
            dry["parts"][1]["requests"].as_i64()
        ),
        (Some(3), Some(1))
    );
    assert!(dry["est_cost_usd"].as_f64().unwrap() > 0.0);
    assert!(fake.requests().is_empty());
    // The byte cap splits too: every part stays under it; a request bigger than the cap alone
    // is refused with a reason instead of being sent.
    let cap = dry["parts"][0]["bytes"].as_u64().unwrap() - 1;
    let dry2 = dry_run(("GITHUB_ANALYSIS_OPENAI_BATCH_MAX_BYTES", &cap.to_string()));
    let parts = dry2["parts"].as_array().unwrap();
    assert!(parts.len() >= 2, "{dry2}");
    let total: u64 = parts.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, 4, "{dry2}");
    assert!(
        parts.iter().all(|p| p["bytes"].as_u64().unwrap() <= cap),
        "{dry2}"
    );
    let dry3 = dry_run(("GITHUB_ANALYSIS_OPENAI_BATCH_MAX_BYTES", "100"));
    assert_eq!(dry3["unprepared"].as_array().unwrap().len(), 4, "{dry3}");
    assert!(dry3["unprepared"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("batch size cap"));
    let bad = with(
        &fake.openai_env(),
        &[("GITHUB_ANALYSIS_OPENAI_BATCH_MAX_REQUESTS", "many")],
    );
    let r = run(&env, &bad, &org_submit_args(OPENAI, &[]));
    r.fails_with("GITHUB_ANALYSIS_OPENAI_BATCH_MAX_REQUESTS");
    assert!(fake.requests().is_empty());
    assert_eq!(
        run(&env, &vars, &["batch", "history"]).ok().json(),
        json!([])
    );

    let job = submit(&env, &vars, OPENAI);
    let jid = job_id(&job);
    assert_eq!(job["provider"], "openai");
    assert_eq!(job["parts"].as_array().unwrap().len(), 2);
    assert_eq!(fake.count("POST", "/v1/files"), 2);
    assert_eq!(fake.count("POST", "/v1/batches"), 2);
    // Our job id and part travel in the batch metadata.
    let batches = fake.batches();
    assert_eq!(batches[0]["metadata"]["github_analysis_job"], jid.as_str());
    assert_eq!(batches[1]["metadata"]["github_analysis_part"], "1");
    // The uploaded file is exactly the input file on disk.
    let input0 = std::fs::read(env.data().join(format!("batch/input/{jid}-0.jsonl"))).unwrap();
    let file_id = batches[0]["input_file_id"].as_str().unwrap();
    assert_eq!(fake.file_bytes(file_id).unwrap(), input0);
    assert_eq!(String::from_utf8_lossy(&input0).lines().count(), 3);
    assert_eq!(
        run(&env, &vars, &["batch", "list"]).ok().json()[0]["job_id"],
        jid.as_str()
    );

    // Each poll advances the fake one state: validating → in_progress → finalizing → completed.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let s = run(&env, &vars, &["batch", "status", &jid[..5]])
            .ok()
            .json();
        seen.push(s["parts"][0]["status"].as_str().unwrap().to_string());
    }
    assert_eq!(
        seen,
        ["in_progress", "finalizing", "completed", "completed"]
    );
    let c = collect(&env, &vars, &jid);
    assert_collected(&c, 2, 2, "collected");
    let failures = c["failures"].to_string();
    assert!(
        failures.contains("invalid answer") && failures.contains("product::nonexistent"),
        "{failures}"
    );
    assert!(
        failures.contains("max_completion_tokens is too large"),
        "{failures}"
    );
    // Output AND error files are kept; output lines are not in input order.
    let out0 =
        std::fs::read_to_string(env.data().join(format!("batch/output/{jid}-0.jsonl"))).unwrap();
    // Part 0 (#1-#3) had no failed request, part 1 (#4) only one: no output file, an error file.
    assert!(!env
        .data()
        .join(format!("batch/output/{jid}-0-errors.jsonl"))
        .exists());
    assert!(env
        .data()
        .join(format!("batch/output/{jid}-1-errors.jsonl"))
        .is_file());
    assert!(!env
        .data()
        .join(format!("batch/output/{jid}-1.jsonl"))
        .exists());
    let order: Vec<String> = out0
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["custom_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_ne!(
        order, sorted,
        "the fake shuffles output; the join must not depend on order"
    );
    // Rows: mode batch, the job id, the batch-discounted cost of 1000 + 100 tokens of gpt-4o-mini.
    let r = env.rows("SELECT issue_id, mode, batch_job_id, prompt_tokens, completion_tokens, round(cost_usd, 9) AS cost FROM ai_results ORDER BY 1");
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["issue_id"], id(1).as_str());
    assert_eq!(r[1]["issue_id"], id(3).as_str());
    assert_eq!(
        (r[0]["mode"].as_str(), r[0]["batch_job_id"].as_str()),
        (Some("batch"), Some(jid.as_str()))
    );
    assert_eq!(r[0]["cost"].as_f64(), Some(0.000105));
    let recs = env.rows(&format!(
        "SELECT issue_id, value, batch_job_id FROM ai_recommendations WHERE issue_id = '{}'",
        id(1)
    ));
    assert!(
        recs.iter()
            .any(|x| x["value"] == "product::kots" && x["batch_job_id"] == jid.as_str()),
        "{recs:?}"
    );
    assert!(!result_file(&env, 2).exists() && !result_file(&env, 4).exists());
    let statuses = item_statuses(&env, &vars, &jid);
    assert_eq!(statuses.iter().filter(|(_, s)| s == "completed").count(), 2);
    assert_eq!(statuses.iter().filter(|(_, s)| s == "failed").count(), 2);

    // A second collect changes nothing: same rows, same files, no new downloads.
    let dump = |env: &Env| env.rows("SELECT * EXCLUDE (id) FROM ai_results ORDER BY issue_id");
    let before = (dump(&env), std::fs::read(result_file(&env, 1)).unwrap());
    let downloads = fake.count("GET", "/v1/files/");
    let again = collect(&env, &vars, &jid);
    assert_stored_failed(&again, 0, 0);
    assert_eq!(
        (dump(&env), std::fs::read(result_file(&env, 1)).unwrap()),
        before
    );
    assert_eq!(fake.count("GET", "/v1/files/"), downloads);

    // Retry: a new job, linked to its parent, with only the two failed items.
    fake.set_script(Arc::new(crate::fakes::batches::default_reply));
    let retry = run(&env, &vars, &["batch", "retry", &jid[..6]]).ok().json();
    let rid = retry["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        (retry["parent_job_id"].as_str(), retry["issues"].as_i64()),
        (Some(jid.as_str()), Some(2))
    );
    fake.finish_all();
    let c = collect(&env, &vars, &rid);
    assert_stored_failed(&c, 2, 0);
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 4);
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM ai_results WHERE batch_job_id = '{rid}'"
        )),
        2
    );
}

#[test]
fn batch_lines_are_byte_identical_to_real_time_requests() {
    let env = setup();
    let chat = FakeOpenAi::start();
    let one = ["--repo", REPO, "--issue-number", "3"];
    env.run_with(&chat.env(), &labeling_args(ORG, OPENAI, &one))
        .ok();
    let sent = chat.requests_for(&id(3));
    // The bytes the fake received, not a re-serialised value.
    let realtime = String::from_utf8(sent[0].raw.clone()).unwrap();
    let fake = FakeBatches::start();
    let job = submit(&env, &fake.openai_env(), OPENAI);
    let jid = job["job_id"].as_str().unwrap();
    let input =
        std::fs::read_to_string(env.data().join(format!("batch/input/{jid}-0.jsonl"))).unwrap();
    let line = input.lines().find(|l| l.contains("Issue #3")).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["body"], sent[0].body);
    assert!(
        line.contains(&format!("\"body\":{realtime}}}")),
        "the body bytes differ from the real-time request"
    );
    assert_eq!(
        (v["method"].as_str(), v["url"].as_str()),
        (Some("POST"), Some("/v1/chat/completions"))
    );
}

#[test]
fn anthropic_job_expired_keeps_partial_results() {
    let env = setup();
    let fake = FakeBatches::start();
    fake.set_end(End::Expired { processed: 2 });
    let vars = fake.anthropic_env();
    let job = submit(&env, &vars, ANTHROPIC);
    let jid = job_id(&job);
    assert_eq!(
        (job["provider"].as_str(), job["parts"][0]["status"].as_str()),
        (Some("anthropic"), Some("in_progress"))
    );
    let lines = fake.input_lines(job["parts"][0]["provider_batch_id"].as_str().unwrap());
    assert_eq!(lines.len(), 4);
    assert!(lines[0]["params"]["tool_choice"]["name"].is_string());
    // The results endpoint refuses until the batch has ended; collect before that stores nothing.
    fake.set_advance(Advance::Manual);
    let early = collect(&env, &vars, &jid);
    assert_eq!(
        (early["stored"].as_i64(), early["parts_running"].as_i64()),
        (Some(0), Some(1))
    );
    fake.finish_all();
    let s = run(&env, &vars, &["batch", "status", &jid]).ok().json();
    assert_eq!(s["status"], "expired");
    let c = collect(&env, &vars, &jid);
    assert_collected(&c, 2, 2, "collected");
    assert_items(&env, &vars, &jid, "expired", 2);
    // Anthropic usage: 200 input + 800 cache read + 80 output tokens, batch price.
    let r = env.rows(
        "SELECT prompt_tokens, cached_tokens, completion_tokens, mode FROM ai_results LIMIT 1",
    );
    assert_eq!(
        r[0],
        json!({"prompt_tokens": 1000, "cached_tokens": 800, "completion_tokens": 80, "mode": "batch"})
    );
    let retry = run(&env, &vars, &["batch", "retry", &jid]).ok().json();
    assert_eq!(retry["issues"], 2);
    assert_eq!(fake.count("POST", "/v1/messages/batches"), 2);
}
