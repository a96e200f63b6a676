//! CLI tests of `process-query`: SQL-selected pipelines in real time (rules, OpenAI and
//! Anthropic fakes) and batch mode, refusals, dry runs, analytics and batch-status.

use crate::fakes::anthropic::FakeAnthropic;
use crate::fakes::batches as fb;
use crate::fakes::openai::FakeOpenAi;
use crate::process::OPENAI;
use crate::support::{read_json, sample, Env, Run};
use predicates::prelude::*;
use serde_json::Value;

fn setup() -> Env {
    let env = Env::new();
    let s = env.json(&[
        "import",
        &sample("dotnet-corefx-issues.json"),
        &sample("webcompat-web-bugs.jsonl"),
    ]);
    assert_eq!(s["issues"], 400);
    env
}

fn pq(env: &Env, vars: &[(&'static str, String)], args: &[&str]) -> assert_cmd::assert::Assert {
    env.cmd_with(vars).arg("process-query").args(args).assert()
}

fn pq_json(env: &Env, vars: &[(&'static str, String)], args: &[&str]) -> Value {
    let out = pq(env, vars, &[args, &["--format", "json"]].concat()).success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// `process-query custom product-labeling <sql> ARGS`, without provider keys, whatever the
/// outcome.
fn pq_custom(env: &Env, sql: &str, args: &[&str]) -> Run {
    pq_run(
        env,
        &[],
        &[&["custom", "product-labeling", sql], args].concat(),
    )
}

/// `process-query ARGS`, whatever the outcome.
fn pq_run(env: &Env, vars: &[(&'static str, String)], args: &[&str]) -> Run {
    env.run_with(vars, &[&["process-query"], args].concat())
}

/// The job id of a batch-mode summary.
fn job_id(summary: &Value) -> String {
    summary["job_id"].as_str().unwrap().to_string()
}

/// The webcompat half of the samples, as custom SQL.
const WEBCOMPAT: &str = "SELECT * FROM issues WHERE org = 'webcompat'";

/// Every result, one row each, in a fixed order: what must survive a rebuild.
const RESULTS: &str = "SELECT issue_id, mode, confidence, batch_job_id IS NOT NULL AS batch FROM ai_results ORDER BY issue_id";

/// `process-query <pipeline> product-labeling ARGS` as [`pq_json`].
fn label_json(env: &Env, vars: &[(&'static str, String)], pipeline: &str, args: &[&str]) -> Value {
    pq_json(env, vars, &[&[pipeline, "product-labeling"], args].concat())
}

#[test]
fn rules_realtime_missing_reprocess_and_custom_select_in_sql() {
    let env = setup();
    let s = label_json(&env, &[], "missing", &["--limit", "1", "--yes"]);
    assert_eq!(s["processed"], 1);
    // The summary's average confidence is the stored one.
    assert_eq!(
        s["avg_confidence"],
        env.scalar("SELECT round(avg(confidence), 3) FROM ai_results")
    );
    let r = env.rows("SELECT issue_id, mode, provider FROM ai_results");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["mode"], "realtime");
    assert_eq!(r[0]["provider"], "rules");
    let first = r[0]["issue_id"].as_str().unwrap().to_string();
    // The result file sits where every mode writes it.
    let n = first.rsplit('#').next().unwrap();
    assert!(env
        .data()
        .join(format!(
            "results/dotnet_corefx_issue_{n}_product-labeling.json"
        ))
        .exists());

    // The next run selects only issues still missing a result.
    let s = label_json(&env, &[], "missing", &["--limit", "2", "--yes"]);
    assert_eq!(s["processed"], 2);
    assert_eq!(
        env.scalar("SELECT count(DISTINCT issue_id) FROM ai_results"),
        3
    );

    // Rules give corefx issues (no Replicated product) a low confidence: all 3 are reprocessed.
    let before = env.scalar("SELECT max(created_at) FROM ai_results");
    let s = label_json(
        &env,
        &[],
        "reprocess",
        &["--threshold", "0.8", "--limit", "3", "--yes"],
    );
    assert_eq!(s["processed"], 3);
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 3);
    assert!(
        env.scalar("SELECT min(created_at) FROM ai_results")
            .as_str()
            > before.as_str()
    );

    // Custom SQL: closed issues only (all of them are webcompat issues).
    let s = label_json(
        &env,
        &[],
        "custom",
        &[
            "SELECT * FROM issues WHERE state='closed'",
            "--limit",
            "2",
            "--yes",
        ],
    );
    assert_eq!(s["processed"], 2);
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM ai_results r JOIN issues i ON i.id = r.issue_id WHERE i.state = 'closed'"
        ),
        2
    );
    // org, repo, number also name issues.
    let s = label_json(
        &env,
        &[],
        "custom",
        &[
            "SELECT org, repo, number FROM issues WHERE number = 71058",
            "--yes",
        ],
    );
    assert_eq!(s["processed"], 1);
    assert_eq!(
        env.scalar("SELECT count(*) FROM ai_results WHERE issue_id = 'webcompat/web-bugs#71058'"),
        1
    );
}

#[test]
fn openai_and_anthropic_realtime_store_the_same_shape() {
    let env = setup();
    let oa = FakeOpenAi::start();
    let s = label_json(
        &env,
        &oa.env(),
        "missing",
        &["--limit", "1", "--yes", "--model", OPENAI],
    );
    assert_eq!(s["processed"], 1);
    assert_eq!(oa.requests().len(), 1);
    let an = FakeAnthropic::start();
    let s = label_json(
        &env,
        &an.env(),
        "missing",
        &[
            "--limit",
            "1",
            "--yes",
            "--model",
            "anthropic:claude-3-5-haiku-latest",
        ],
    );
    assert_eq!(s["processed"], 1);
    assert_eq!(an.requests().len(), 1);
    let r = env.rows(
        "SELECT provider, mode, prompt_tokens > 0 AS tokens FROM ai_results ORDER BY provider",
    );
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["provider"], "anthropic");
    assert_eq!(r[1]["provider"], "openai");
    assert!(r
        .iter()
        .all(|x| x["mode"] == "realtime" && x["tokens"] == true));
}

#[test]
fn an_unknown_processor_fails_before_anything_is_selected() {
    let env = setup();
    pq_run(
        &env,
        &[],
        &["missing", "invalid-processor", "--batch-mode", "--yes"],
    )
    .fails_with("unknown processor \"invalid-processor\"")
    .says("product-labeling");
    assert_eq!(env.scalar("SELECT count(*) FROM batch_jobs"), 0);
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 0);
}

#[test]
fn without_a_terminal_and_without_yes_it_refuses_instead_of_hanging() {
    let env = setup();
    pq(&env, &[], &["missing", "product-labeling", "--limit", "1"])
        .code(2)
        .stderr(predicate::str::contains("pass --yes"));
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 0);
}

#[test]
fn zero_selected_issues_is_a_notice_not_an_error() {
    let env = setup();
    pq_custom(&env, "SELECT * FROM issues WHERE false", &["--batch-mode"])
        .ok()
        .says("No issues selected by your query to process");
    assert_eq!(env.scalar("SELECT count(*) FROM batch_jobs"), 0);
}

#[test]
fn custom_sql_must_be_a_select_of_issue_rows() {
    let env = setup();
    for sql in ["DELETE FROM issues", "SELECT 1; DROP TABLE issues"] {
        pq_custom(&env, sql, &["--yes"])
            .fails_with("custom SQL must be one SELECT returning issue rows");
    }
    pq_custom(&env, "SELECT name FROM labels", &["--yes"]).fails_with("it returns (name)");
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 400);
}

#[test]
fn dry_run_counts_in_sql_and_shows_the_query() {
    let env = setup();
    label_json(&env, &[], "missing", &["--limit", "5", "--yes"]);
    let v = label_json(&env, &[], "missing", &["--dry-run"]);
    let open = env
        .scalar("SELECT count(*) FROM issues WHERE state = 'open'")
        .as_u64()
        .unwrap();
    assert_eq!(v["selected"].as_u64().unwrap(), open - 5);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["preview"].as_array().unwrap().len(), 20);
    assert!(v["selection_query"]
        .as_str()
        .unwrap()
        .contains("NOT EXISTS (SELECT 1 FROM ai_results"));
    // Priced models get an estimate, with the batch discount in batch mode.
    let rt = label_json(&env, &[], "missing", &["--dry-run", "--model", OPENAI]);
    let bt = label_json(
        &env,
        &[],
        "missing",
        &["--dry-run", "--model", OPENAI, "--batch-mode"],
    );
    let (rt, bt) = (
        rt["est_cost_usd"].as_f64().unwrap(),
        bt["est_cost_usd"].as_f64().unwrap(),
    );
    assert!(
        rt > 0.0 && (bt - rt / 2.0).abs() < 1e-9,
        "realtime {rt}, batch {bt}"
    );
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 5);
}

#[test]
fn analytics_summarises_results_per_processor() {
    let env = setup();
    let empty = pq_json(&env, &[], &["analytics"]);
    assert_eq!(empty["processors"], serde_json::json!([]));
    label_json(&env, &[], "custom", &[WEBCOMPAT, "--limit", "4", "--yes"]);
    let a = pq_json(&env, &[], &["analytics"]);
    assert_eq!(a["processors"][0]["processor"], "product-labeling");
    assert_eq!(a["processors"][0]["results"], 4);
    assert_eq!(a["processors"][0]["realtime"], 4);
    let buckets: u64 = a["confidence_distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["results"].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 4);
}

/// The original task's validation steps, offline with `rules` (local batch executor).
#[test]
fn validation_steps_with_rules() {
    let env = setup();
    validation_steps(&env, &[], "rules", &mut |_| {});
}

/// Batch answers with a confidence below the reprocess threshold, so that `reprocess` has
/// provider results to redo.
fn low_confidence_batches(state: &fb::Shared) {
    fb::set_advance(state, fb::Advance::Manual);
    fb::set_script(
        state,
        std::sync::Arc::new(|c: &fb::LineCall| match fb::default_reply(c) {
            fb::LineReply::Answer(mut v) => {
                v["confidence"] = serde_json::json!(0.5);
                fb::LineReply::Answer(v)
            }
            other => other,
        }),
    );
}

/// The validation steps against the fake OpenAI service (Chat Completions, Files and Batches on
/// one base URL).
#[test]
fn validation_steps_with_openai() {
    let env = setup();
    let batches = fb::new_state();
    low_confidence_batches(&batches);
    let oa = FakeOpenAi::with_batches(batches.clone());
    validation_steps(&env, &oa.env(), "openai:gpt-4o-mini", &mut |_| {
        fb::finish_all(&batches)
    });
    let files = oa
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/chat/completions"))
        .count();
    assert_eq!(files, 3, "real-time requests: 1 + 2");
}

/// The validation steps against the fake Anthropic service (Messages and Message Batches).
#[test]
fn validation_steps_with_anthropic() {
    let env = setup();
    let batches = fb::new_state();
    low_confidence_batches(&batches);
    let an = FakeAnthropic::with_batches(batches.clone());
    validation_steps(
        &env,
        &an.env(),
        "anthropic:claude-3-5-haiku-latest",
        &mut |_| fb::finish_all(&batches),
    );
    assert_eq!(an.requests().len(), 3, "real-time requests: 1 + 2");
}

/// Runs the validation steps; `advance` lets a provider fake finish the batches it holds.
pub fn validation_steps(
    env: &Env,
    vars: &[(&'static str, String)],
    model: &str,
    advance: &mut dyn FnMut(&Env),
) {
    let m = ["--model", model];
    // `process-query <pipeline> product-labeling ARGS --model <model>`.
    let step =
        |pipeline: &str, args: &[&str]| label_json(env, vars, pipeline, &[args, &m].concat());
    // batch-status with no jobs.
    pq(env, vars, &["batch-status"])
        .success()
        .stderr(predicate::str::contains("No batch jobs found"));
    assert_eq!(pq_json(env, vars, &["batch-status"]), serde_json::json!([]));

    // missing --limit 1 (real-time).
    let s = step("missing", &["--limit", "1", "--yes"]);
    assert_eq!(s["processed"], 1);
    assert_eq!(
        env.scalar("SELECT count(*) FROM ai_results WHERE mode = 'realtime'"),
        1
    );

    // missing --batch-mode --limit 5.
    let job1 = step("missing", &["--batch-mode", "--limit", "5", "--yes"]);
    assert_eq!(job1["issues"], 5);
    let job1 = job_id(&job1);
    // Issues in a running job are not selected twice; nor are those with results.
    advance(env);
    pq(env, vars, &["batch-status"]).success();
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM ai_results WHERE batch_job_id = '{job1}'"
        )),
        5
    );
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 6);

    // reprocess --threshold 0.8 --batch-mode --limit 3: low-confidence results are redone.
    let low = env
        .scalar("SELECT count(*) FROM ai_results WHERE confidence < 0.8")
        .as_u64()
        .unwrap();
    let job2 = step(
        "reprocess",
        &[
            "--threshold",
            "0.8",
            "--batch-mode",
            "--limit",
            "3",
            "--yes",
        ],
    );
    assert_eq!(job2["issues"].as_u64().unwrap(), low.min(3));
    let job2 = job_id(&job2);

    // custom "SELECT * FROM issues WHERE state='closed'" --batch-mode --limit 2.
    let job3 = step(
        "custom",
        &[
            "SELECT * FROM issues WHERE state='closed'",
            "--batch-mode",
            "--limit",
            "2",
            "--yes",
        ],
    );
    assert_eq!(job3["issues"], 2);
    let job3 = job_id(&job3);

    // batch-status refreshes and collects everything that ended.
    advance(env);
    let jobs = pq_json(env, vars, &["batch-status"]);
    let statuses: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["collected"; 3], "{jobs}");
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM ai_results WHERE batch_job_id = '{job2}'"
        )),
        low.min(3)
    );
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM ai_results r JOIN issues i ON i.id = r.issue_id \
             WHERE r.batch_job_id = '{job3}' AND i.state = 'closed'"
        )),
        2
    );

    // The batch_jobs SQL of the design shows the jobs, with their selection query and command.
    let rows = env.json(&[
        "query",
        "sql",
        "SELECT job_id, processor, status FROM batch_jobs ORDER BY created_at DESC LIMIT 5",
    ]);
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[0]["job_id"], job3.as_str());
    let sel = env.scalar(&format!(
        "SELECT selection_query FROM batch_jobs WHERE job_id = '{job3}'"
    ));
    assert!(sel.as_str().unwrap().contains("state='closed'"), "{sel}");
    let src = env.scalar(&format!(
        "SELECT source_command FROM batch_jobs WHERE job_id = '{job1}'"
    ));
    assert!(
        src.as_str().unwrap().starts_with("process-query missing"),
        "{src}"
    );

    // The same `missing --limit 2` in real time, then in batch mode: same files, same rows.
    let s = step("missing", &["--limit", "2", "--yes"]);
    assert_eq!(s["processed"], 2);
    let rt_ids = env.json(&[
        "query",
        "sql",
        "SELECT issue_id FROM ai_results WHERE mode = 'realtime' ORDER BY created_at DESC LIMIT 2",
    ]);
    let job4 = step("missing", &["--batch-mode", "--limit", "2", "--yes"]);
    let job4 = job_id(&job4);
    advance(env);
    pq(env, vars, &["batch-status"]).success();
    let bt_ids = env.json(&[
        "query",
        "sql",
        &format!("SELECT issue_id, file_path FROM ai_results WHERE batch_job_id = '{job4}'"),
    ]);
    assert_eq!(bt_ids.as_array().unwrap().len(), 2);
    for r in rt_ids
        .as_array()
        .unwrap()
        .iter()
        .chain(bt_ids.as_array().unwrap())
    {
        let id = r["issue_id"].as_str().unwrap();
        let (repo, n) = id.split_once('#').unwrap();
        let file = env.data().join(format!(
            "results/{}_issue_{n}_product-labeling.json",
            repo.replace('/', "_")
        ));
        let doc: Value = read_json(&file);
        assert_eq!(
            doc["issue_reference"]["issue_number"]
                .as_u64()
                .unwrap()
                .to_string(),
            n
        );
        assert!(doc["analysis"]["confidence"].is_number());
    }
    // One row per issue and processor, whichever mode wrote it.
    assert_eq!(
        env.scalar("SELECT count(*) - count(DISTINCT issue_id) FROM ai_results"),
        0
    );

    // An unknown processor fails before anything is created.
    let jobs_before = env.scalar("SELECT count(*) FROM batch_jobs");
    pq_run(env, vars, &["missing", "invalid-processor", "--batch-mode"])
        .fails_with("known processors: product-labeling");
    assert_eq!(env.scalar("SELECT count(*) FROM batch_jobs"), jobs_before);
}

#[test]
fn a_lost_database_gets_issues_and_results_back_from_the_files() {
    let env = setup();
    label_json(&env, &[], "missing", &["--limit", "3", "--yes"]);
    label_json(
        &env,
        &[],
        "custom",
        &[WEBCOMPAT, "--limit", "2", "--batch-mode", "--yes"],
    );
    let before = env.json(&["query", "sql", RESULTS]);
    let recs = env.scalar("SELECT count(*) FROM ai_recommendations");
    assert_eq!(before.as_array().unwrap().len(), 5);
    std::fs::remove_file(env.db_file()).unwrap();
    // A result file that is not ours is reported, the others load.
    std::fs::write(
        env.data()
            .join("results/junk_x_issue_1_product-labeling.json"),
        "{}",
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["sync", "--ai-results", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["added"], 400);
    assert_eq!(s["result_files_loaded"], 5);
    assert_eq!(s["result_files_failed"], 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk_x_issue_1_product-labeling.json"));
    let after = env.json(&["query", "sql", RESULTS]);
    assert_eq!(after, before);
    assert_eq!(env.scalar("SELECT count(*) FROM ai_recommendations"), recs);
}

#[test]
fn batch_status_collects_a_failed_job_once_and_then_leaves_the_provider_alone() {
    let env = setup();
    let batches = fb::new_state();
    // (A full queue, `token_limit_exceeded`, is a wait, not a failure: tests/it/batch/queue.rs.)
    fb::reject_batches(
        &batches,
        "invalid_request",
        "The batch input file is not valid for this endpoint.",
    );
    let oa = FakeOpenAi::with_batches(batches.clone());
    let vars = oa.env();
    let job = label_json(
        &env,
        &vars,
        "missing",
        &["--batch-mode", "--limit", "2", "--yes", "--model", OPENAI],
    );
    let job = job_id(&job);
    fb::finish_all(&batches);
    let first = pq_json(&env, &vars, &["batch-status"]);
    assert_eq!(first[0]["status"], "failed", "{first}");
    assert_eq!(first[0]["failed"], 2);
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM batch_items WHERE job_id = '{job}' AND status = 'failed' AND error IS NOT NULL"
        )),
        2
    );
    let polls = fb::count(&batches, "GET", "/v1/batches");
    // Once collected, the job needs neither the provider nor its key again.
    let out = env
        .cmd()
        .args(["process-query", "batch-status", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("could not"), "{stderr}");
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again, first);
    assert_eq!(
        fb::count(&batches, "GET", "/v1/batches"),
        polls,
        "asked the provider again"
    );
    assert_eq!(env.scalar("SELECT count(*) FROM ai_results"), 0);
}
