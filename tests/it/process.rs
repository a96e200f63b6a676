//! CLI tests of `process product-labeling`: the offline rules model, OpenAI and Anthropic end to
//! end against protocol-faithful fakes, dry runs, taxonomies, token budgets, Ctrl-C and `.env`
//! keys; the shared setup of the `process_*` modules. Retries, repairs, failures and key hygiene
//! are in `process_failures`, model families in `process_models`, provider limits and answer
//! normalisation in `process_provider`.

use std::sync::Arc;
use std::time::Duration;

use crate::fakes::anthropic::{self as fa, FakeAnthropic};
use crate::fakes::openai::{self as fo, FakeOpenAi};
use crate::support::{labeling_args, read_json, Env, Run, AREAS_TAXONOMY};
use serde_json::{json, Value};

pub(crate) const ORG: &str = "replicatedhq";
pub(crate) const REPO: &str = "triage-test";
/// The model of most OpenAI and Anthropic runs (others are named where they matter).
pub(crate) const OPENAI: &str = "openai:gpt-4o-mini";
pub(crate) const ANTHROPIC: &str = "anthropic:claude-haiku-4-5";

pub(crate) fn stored(
    number: u64,
    title: &str,
    body: &str,
    labels: &[&str],
    comments: &[&str],
) -> Value {
    crate::support::stored_issue(ORG, REPO, number, title, body, labels, comments)
}

/// Four issues: kots, troubleshoot, embedded-cluster, and one about no product.
pub(crate) fn setup() -> Env {
    let env = Env::new();
    let issues = json!([
        stored(
            1,
            "kotsadm pod crashes after upgrade",
            "Running `kubectl kots admin-console` shows a blank page after the upgrade.",
            &["bug"],
            &["Same here on 1.109"]
        ),
        stored(
            2,
            "support-bundle collectors hang",
            "kubectl support-bundle with the default collectors never finishes.",
            &["product::kots"],
            &[]
        ),
        stored(
            3,
            "Install fails on k0s",
            "embedded-cluster install stops at the local artifact mirror step.",
            &[],
            &[]
        ),
        stored(
            4,
            "Question about our invoice",
            "Who should we contact about billing?",
            &[],
            &[]
        ),
    ]);
    let s = env.import_json(&issues);
    assert_eq!(s["issues"], 4, "{s}");
    env
}

pub(crate) fn id(n: u64) -> String {
    format!("{ORG}/{REPO}#{n}")
}

pub(crate) fn run(env: &Env, vars: &[(&str, String)], args: &[&str]) -> Run {
    env.run_json(
        vars,
        &[&["process", "product-labeling", "--org", ORG], args].concat(),
    )
}

/// [`run`] with `--model <model>` and `args`.
pub(crate) fn run_model(env: &Env, vars: &[(&str, String)], model: &str, args: &[&str]) -> Run {
    env.run_json(vars, &labeling_args(ORG, model, args))
}

pub(crate) fn result_file(env: &Env, n: u64) -> std::path::PathBuf {
    env.data().join(format!(
        "results/{ORG}_{REPO}_issue_{n}_product-labeling.json"
    ))
}

#[test]
fn rules_labels_offline_without_any_key_and_reprocessing_replaces() {
    let env = setup();
    let r = run(&env, &[], &[]).ok();
    r.says("using the offline `rules` model");
    let s = r.json();
    assert_eq!(
        (
            s["processed"].clone(),
            s["failed"].clone(),
            s["model"].clone()
        ),
        (json!(4), json!(0), json!("rules"))
    );
    assert_eq!(s["cost_usd"], 0.0);

    let got = env.rows("SELECT issue_id, value FROM ai_recommendations WHERE kind = 'label' ORDER BY issue_id, confidence DESC");
    let top = |n: u64| {
        got.iter()
            .find(|r| r["issue_id"] == id(n))
            .map(|r| r["value"].clone())
    };
    assert_eq!(top(1), Some(json!("product::kots")));
    assert_eq!(top(2), Some(json!("product::troubleshoot")));
    assert_eq!(top(3), Some(json!("product::embedded-cluster")));
    assert_eq!(top(4), None);
    // The wrong current label of #2 is flagged for removal.
    assert_eq!(
        env.rows("SELECT value FROM ai_recommendations WHERE kind = 'remove_label'"),
        vec![json!({"value": "product::kots"})]
    );
    let r1 = &env.rows(&format!("SELECT provider, model, mode, prompt_tokens, cost_usd, file_path FROM ai_results WHERE issue_id = '{}'", id(1)))[0];
    assert_eq!(
        (
            r1["provider"].clone(),
            r1["model"].clone(),
            r1["mode"].clone()
        ),
        (json!("rules"), json!("rules"), json!("realtime"))
    );

    // The result file has the documented shape and matches the row.
    let doc: Value = read_json(result_file(&env, 1));
    assert_eq!(doc["issue_reference"]["issue_number"], 1);
    assert_eq!(
        doc["issue_reference"]["file_path"],
        format!("issues/{ORG}_{REPO}_issue_1.json")
    );
    assert_eq!(doc["processor"]["name"], "product-labeling");
    assert_eq!(doc["processor"]["mode"], "realtime");
    assert_eq!(doc["processor"]["taxonomy"]["name"], "replicated-products");
    assert!(doc["analysis"]["confidence"].as_f64().unwrap() > 0.5);
    assert!(doc["analysis"]["recommended_labels"][0]["reasoning"]
        .as_str()
        .unwrap()
        .contains("kotsadm"));
    assert_eq!(
        r1["file_path"],
        format!("results/{ORG}_{REPO}_issue_1_product-labeling.json")
    );

    // Existing results are skipped, then replaced with --reprocess (no duplicate rows).
    let again = run(&env, &[], &[]).json();
    assert_eq!(
        (
            again["processed"].clone(),
            again["skipped_existing"].clone()
        ),
        (json!(0), json!(4))
    );
    let re = run(
        &env,
        &[],
        &["--reprocess", "--issue-number", "1", "--repo", REPO],
    )
    .json();
    assert_eq!(re["processed"], 1);
    assert_eq!(env.rows("SELECT count(*) AS n FROM ai_results")[0]["n"], 4);
    assert_eq!(
        env.rows(&format!(
            "SELECT count(*) AS n FROM ai_recommendations WHERE issue_id = '{}'",
            id(1)
        ))[0]["n"],
        1
    );
}

#[test]
fn openai_end_to_end_against_the_fake() {
    let env = setup();
    let fake = FakeOpenAi::start();
    let r = run_model(&env, &fake.env(), OPENAI, &["--concurrency", "2"]).ok();
    let s = r.json();
    assert_eq!(
        (s["processed"].clone(), s["requests"].clone()),
        (json!(4), json!(4))
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4);
    for q in &reqs {
        assert_eq!(q.status, 200, "{:?}", q.body);
        assert_eq!(q.path, "/v1/chat/completions");
        assert_eq!(q.headers["authorization"], format!("Bearer {}", fo::KEY));
        assert_eq!(q.body["model"], "gpt-4o-mini");
        assert_eq!(q.body["response_format"]["json_schema"]["strict"], true);
        // Stable prefix: identical system message for every issue; the issue comes last.
        assert_eq!(q.body["messages"][0], reqs[0].body["messages"][0]);
        assert_eq!(
            q.body["messages"].as_array().unwrap().last().unwrap()["role"],
            "user"
        );
    }
    let got = env.rows("SELECT provider, model, prompt_tokens, cached_tokens, completion_tokens, cost_usd FROM ai_results ORDER BY issue_id");
    assert_eq!(got.len(), 4);
    for g in &got {
        assert_eq!(
            (g["provider"].clone(), g["model"].clone()),
            (json!("openai"), json!("gpt-4o-mini"))
        );
        assert!(
            g["prompt_tokens"].as_i64().unwrap() > 1000
                && g["completion_tokens"].as_i64().unwrap() > 0
        );
        assert!(g["cost_usd"].as_f64().unwrap() > 0.0);
    }
    // The fake serves a repeated long prefix from its cache; cached tokens are recorded.
    assert!(
        got.iter()
            .filter(|g| g["cached_tokens"].as_i64().unwrap() > 0)
            .count()
            >= 2,
        "{got:?}"
    );
    let total: i64 = got
        .iter()
        .map(|g| g["cached_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(s["cached_tokens"], total);
    let doc: Value = read_json(result_file(&env, 2));
    assert_eq!(doc["processor"]["provider"], "openai");
    assert!(doc["usage"]["response_id"]
        .as_str()
        .unwrap()
        .starts_with("chatcmpl-"));
    assert_eq!(doc["usage"]["requests"], 1);
}

#[test]
fn anthropic_end_to_end_against_the_fake() {
    let env = setup();
    let fake = FakeAnthropic::start();
    let r = run_model(&env, &fake.env(), ANTHROPIC, &["--concurrency", "1"]).ok();
    assert_eq!(r.json()["processed"], 4);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4);
    for q in &reqs {
        assert_eq!(q.status, 200, "{:?}", q.body);
        assert_eq!(q.headers["x-api-key"], fa::KEY);
        assert_eq!(q.headers["anthropic-version"], fa::VERSION);
        assert!(!q.headers.contains_key("authorization"));
        assert_eq!(
            q.body["tool_choice"],
            json!({"type": "tool", "name": "product_labeling"})
        );
        assert_eq!(
            q.body["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(q.body["system"], reqs[0].body["system"]);
    }
    let got = env.rows(
        "SELECT provider, prompt_tokens, cached_tokens, cost_usd FROM ai_results ORDER BY issue_id",
    );
    assert!(got
        .iter()
        .all(|g| g["provider"] == "anthropic" && g["cost_usd"].as_f64().unwrap() > 0.0));
    // What the real service does with the default prompt: its stable prefix (~2,000 tokens) is
    // below Haiku 4.5's minimum cacheable prompt (4,096 tokens), so nothing is cached even
    // with the breakpoint — and the dry run says so.
    assert!(got.iter().all(|g| g["cached_tokens"] == 0), "{got:?}");
    let doc: Value = read_json(result_file(&env, 1));
    assert_eq!(doc["usage"]["cache_creation_tokens"], 0, "{doc}");
    let dry = |model: &str| {
        let r = run_model(&env, &[], model, &["--dry-run", "--reprocess"]).ok();
        r.json()["prefix_cache"].clone()
    };
    let haiku = dry("anthropic:claude-haiku-4-5");
    let prefix = haiku["prefix_tokens"].as_u64().unwrap();
    assert!((1024..4096).contains(&prefix), "{haiku}");
    assert_eq!(
        (haiku["cached"].as_bool(), haiku["min_tokens"].as_u64()),
        (Some(false), Some(4096))
    );
    let sonnet = dry("anthropic:claude-sonnet-4-5");
    assert_eq!(
        (sonnet["cached"].as_bool(), sonnet["min_tokens"].as_u64()),
        (Some(true), Some(1024))
    );
    // Sonnet 4.5 caches from 1,024 tokens: one request writes the cache, the three after it
    // read it (concurrency 1).
    run_model(
        &env,
        &fake.env(),
        "anthropic:claude-sonnet-4-5",
        &["--concurrency", "1", "--reprocess"],
    )
    .ok();
    let got = env.rows("SELECT cached_tokens FROM ai_results ORDER BY issue_id");
    assert_eq!(
        got.iter()
            .filter(|g| g["cached_tokens"].as_i64().unwrap() > 0)
            .count(),
        3,
        "{got:?}"
    );
    let doc: Value = read_json(result_file(&env, 1));
    let creation = doc["usage"]["cache_creation_tokens"].as_u64().unwrap()
        + doc["usage"]["cached_tokens"].as_u64().unwrap();
    assert!(creation > 1000, "{doc}");
}

#[test]
fn dry_run_estimates_tokens_and_cost_and_calls_nothing() {
    let env = setup();
    let fake = FakeOpenAi::start();
    let r = run_model(&env, &fake.env(), OPENAI, &["--dry-run"]).ok();
    let s = r.json();
    assert_eq!(s["to_process"], 4);
    assert_eq!(s["issues"].as_array().unwrap().len(), 4);
    let prompt = s["est_prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 4 * 1000, "{s}");
    assert_eq!(s["est_completion_tokens"], 4 * 400);
    let cost = s["est_cost_usd"].as_f64().unwrap();
    let expected = (prompt as f64 * 0.15 + 1600.0 * 0.60) / 1e6;
    assert!((cost - expected).abs() < 1e-5, "{cost} vs {expected}");
    assert!(fake.requests().is_empty());
    assert_eq!(env.rows("SELECT count(*) AS n FROM ai_results")[0]["n"], 0);
    // No key is needed to plan, and an unknown model's cost is unknown, not zero.
    let r = run_model(&env, &[], "openai:my-finetune", &["--dry-run"]).ok();
    assert_eq!(r.json()["est_cost_usd"], Value::Null);
}

#[test]
fn missing_keys_bad_settings_and_bad_taxonomies_are_user_errors() {
    let env = setup();
    let r = run_model(&env, &[], OPENAI, &[]);
    r.fails_with("OPENAI_API_KEY is not set");
    let r = run_model(&env, &[], ANTHROPIC, &["--setting", "temperature=1.5"]);
    r.fails_with("temperature");
    let r = run_model(
        &env,
        &[],
        "openai:o3-mini",
        &["--setting", "temperature=0.2"],
    );
    r.fails_with("reasoning model");
    let r = run_model(&env, &[], "gemini:pro", &[]);
    r.fails_with("unknown provider");
    let r = run(&env, &[], &["--taxonomy", "/nonexistent/taxonomy.toml"]);
    assert_eq!(r.code, 1);
    let bad = env.write_file("bad.toml", "name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'\nsignals = [{pattern = '(unclosed'}]");
    let r = run(&env, &[], &["--taxonomy", bad.to_str().unwrap()]);
    r.fails_with("not a valid regex");
    // Valid syntax that compiles beyond the size limit: refused before the rules model runs.
    let huge = env.write_file("huge.toml", "name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'\nsignals = [{pattern = '\\w{5000}'}]");
    let r = run_model(&env, &[], "rules", &["--taxonomy", huge.to_str().unwrap()]);
    r.fails_with("size limit");
    let r = run(&env, &[], &["--repo", "no-such-repo"]);
    r.fails_with("no stored issues");
    assert_eq!(env.rows("SELECT count(*) AS n FROM ai_results")[0]["n"], 0);
}

#[test]
fn a_custom_taxonomy_replaces_the_default() {
    let env = setup();
    let t = env.write_file("areas.toml", AREAS_TAXONOMY);
    run(&env, &[], &["--taxonomy", t.to_str().unwrap()]).ok();
    let got = env.rows("SELECT issue_id, value FROM ai_recommendations WHERE kind = 'label' ORDER BY issue_id, value");
    assert_eq!(
        got,
        vec![
            json!({"issue_id": id(3), "value": "area::install"}),
            json!({"issue_id": id(4), "value": "area::billing"})
        ]
    );
    // An AI model is told the custom labels only.
    let fake = FakeOpenAi::start();
    run_model(
        &env,
        &fake.env(),
        OPENAI,
        &[
            "--taxonomy",
            t.to_str().unwrap(),
            "--reprocess",
            "--repo",
            REPO,
            "--issue-number",
            "4",
        ],
    )
    .ok();
    let body = &fake.requests()[0].body;
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("area::billing") && !system.contains("product::kots"));
    assert_eq!(
        body.pointer("/response_format/json_schema/schema/properties/recommended_labels/items/properties/label/enum").unwrap(),
        &json!(["area::billing", "area::install"])
    );
}

#[test]
fn long_threads_are_cut_to_the_token_budget_and_say_so() {
    let env = Env::new();
    let comments: Vec<String> = (0..60)
        .map(|i| format!("comment {i}: {}", "kots logs attached ".repeat(60)))
        .collect();
    let refs: Vec<&str> = comments.iter().map(String::as_str).collect();
    let path = env.dir.path().join("long.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&json!([stored(
            9,
            "Long thread",
            "The original report.",
            &[],
            &refs
        )]))
        .unwrap(),
    )
    .unwrap();
    env.json(&["import", path.to_str().unwrap()]);
    let fake = FakeOpenAi::start();
    run_model(&env, &fake.env(), OPENAI, &["--token-budget", "2000"]).ok();
    let user = fake.requests()[0].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(user.contains("The original report."));
    assert!(user.contains("comment 59:"));
    assert!(!user.contains("comment 0:"));
    assert!(
        user.contains("earlier comment(s) were omitted to fit the token budget"),
        "{user}"
    );
    let doc: Value = read_json(result_file(&env, 9));
    assert!(doc["usage"]["prompt_note"]
        .as_str()
        .unwrap()
        .contains("earlier comment(s)"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_new_requests_and_keeps_finished_work() {
    let env = setup();
    let fake = FakeOpenAi::with_script(Arc::new(|c: &fo::Call| {
        if c.issue.as_deref().is_some_and(|i| i.ends_with("#3")) {
            fo::Reply::Hold
        } else {
            fo::Reply::Answer(fo::default_answer(c))
        }
    }));
    let bin = assert_cmd::cargo::cargo_bin("github-analysis");
    let child = std::process::Command::new(bin)
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_ANALYSIS_DATA_DIR", env.data())
        .envs(fake.env())
        .args(labeling_args(
            ORG,
            OPENAI,
            &["--concurrency", "1", "--format", "json"],
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until the held request for #3 has arrived: #1 and #2 are done by then.
    let mut waited = 0;
    while fake.requests_for(&id(3)).is_empty() {
        assert!(waited < 600, "the request for #3 never arrived");
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    let pid = child.id().to_string();
    // stderr is read line by line so the test knows when the interrupt was taken.
    let mut child = child;
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the run announces the interrupt");
        if line.contains("interrupted: no new requests") {
            break;
        }
    }
    // The run keeps waiting for the request in flight; answering it lets the run finish.
    fake.release(1);
    let out = child.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (s["processed"].clone(), s["not_started"].clone()),
        (json!(3), json!(1))
    );
    assert!(fake.requests_for(&id(4)).is_empty());
    let stored: Vec<Value> = env.rows("SELECT issue_id FROM ai_results ORDER BY issue_id");
    assert_eq!(
        stored,
        vec![
            json!({"issue_id": id(1)}),
            json!({"issue_id": id(2)}),
            json!({"issue_id": id(3)})
        ]
    );
    assert!(!result_file(&env, 4).exists());
}

#[test]
fn keys_from_a_dot_env_file_pick_the_provider_by_default() {
    let env = setup();
    let fake = FakeOpenAi::start();
    let dotenv: String = fake
        .env()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(env.dir.path().join(".env"), dotenv).unwrap();
    // No --model and no key in the environment: the .env key selects OpenAI's default model.
    let r = run(&env, &[], &["--repo", REPO, "--issue-number", "1"]).ok();
    assert_eq!(r.json()["model"], "openai:gpt-4o-mini");
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(
        fake.requests()[0].headers["authorization"],
        format!("Bearer {}", fo::KEY)
    );
    // GITHUB_ANALYSIS_MODEL outranks the key-based default.
    let r = run(
        &env,
        &[("GITHUB_ANALYSIS_MODEL", "rules".into())],
        &["--reprocess"],
    )
    .ok();
    assert_eq!(r.json()["model"], "rules");
    assert_eq!(fake.requests().len(), 1);
}
