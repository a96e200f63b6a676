//! CLI tests of `process product-labeling`: the offline rules model, OpenAI and Anthropic against
//! protocol-faithful fakes, retries, repairs, failures, dry runs, Ctrl-C, and key hygiene.

use std::sync::Arc;
use std::time::Duration;

use crate::fakes::anthropic::{self as fa, FakeAnthropic};
use crate::fakes::openai::{self as fo, FakeOpenAi};
use crate::support::{Env, Run};
use serde_json::{json, Value};

const ORG: &str = "replicatedhq";
const REPO: &str = "triage-test";

fn stored(number: u64, title: &str, body: &str, labels: &[&str], comments: &[&str]) -> Value {
    crate::support::stored_issue(ORG, REPO, number, title, body, labels, comments)
}

/// Four issues: kots, troubleshoot, embedded-cluster, and one about no product.
fn setup() -> Env {
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

fn id(n: u64) -> String {
    format!("{ORG}/{REPO}#{n}")
}

fn run(env: &Env, vars: &[(&str, String)], args: &[&str]) -> Run {
    env.run_json(
        vars,
        &[&["process", "product-labeling", "--org", ORG], args].concat(),
    )
}

fn result_file(env: &Env, n: u64) -> std::path::PathBuf {
    env.data().join(format!(
        "results/{ORG}_{REPO}_issue_{n}_product-labeling.json"
    ))
}

/// Every file under the data directory, as bytes.
fn all_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn rules_labels_offline_without_any_key_and_reprocessing_replaces() {
    let env = setup();
    let r = run(&env, &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("using the offline `rules` model"),
        "{}",
        r.stderr
    );
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
    let doc: Value = serde_json::from_slice(&std::fs::read(result_file(&env, 1)).unwrap()).unwrap();
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
    let r = run(
        &env,
        &fake.env(),
        &["--model", "openai:gpt-4o-mini", "--concurrency", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
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
    let doc: Value = serde_json::from_slice(&std::fs::read(result_file(&env, 2)).unwrap()).unwrap();
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
    let r = run(
        &env,
        &fake.env(),
        &[
            "--model",
            "anthropic:claude-haiku-4-5",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
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
    // One request wrote the cache, the three after it read it (concurrency 1).
    assert_eq!(
        got.iter()
            .filter(|g| g["cached_tokens"].as_i64().unwrap() > 0)
            .count(),
        3,
        "{got:?}"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(result_file(&env, 1)).unwrap()).unwrap();
    let creation = doc["usage"]["cache_creation_tokens"].as_u64().unwrap()
        + doc["usage"]["cached_tokens"].as_u64().unwrap();
    assert!(creation > 1000, "{doc}");
}

#[test]
fn rate_limits_server_errors_and_overloads_are_retried() {
    let env = setup();
    let fake = FakeOpenAi::with_script(Arc::new(|c: &fo::Call| {
        let n = c.issue.as_deref().unwrap_or("");
        match (n.rsplit('#').next().unwrap_or(""), c.attempt) {
            ("1", 1) => fo::Reply::RateLimited { retry_after_ms: 10 },
            ("2", 1) => fo::Reply::ServerError,
            ("3", 1 | 2) => fo::Reply::Overloaded {
                retry_after_ms: Some(10),
            },
            _ => fo::Reply::Answer(fo::default_answer(c)),
        }
    }));
    let r = run(&env, &fake.env(), &["--model", "openai:gpt-4o-mini"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.json();
    assert_eq!(
        (
            s["processed"].clone(),
            s["failed"].clone(),
            s["requests"].clone()
        ),
        (json!(4), json!(0), json!(8))
    );
    let counts: Vec<usize> = (1..=4).map(|n| fake.requests_for(&id(n)).len()).collect();
    assert_eq!(counts, vec![2, 2, 3, 1]);
    assert_eq!(fake.requests_for(&id(1))[0].status, 429);
    assert_eq!(fake.requests_for(&id(3))[1].status, 503);
    let doc: Value = serde_json::from_slice(&std::fs::read(result_file(&env, 3)).unwrap()).unwrap();
    assert_eq!(doc["usage"]["requests"], 3);
}

#[test]
fn anthropic_429_529_and_500_are_retried() {
    let env = setup();
    let fake = FakeAnthropic::with_script(Arc::new(|c: &fa::Call| {
        match (
            c.issue
                .as_deref()
                .and_then(|i| i.rsplit('#').next())
                .unwrap_or(""),
            c.attempt,
        ) {
            ("1", 1) => fa::Reply::RateLimited { reset_ms: 20 },
            ("2", 1) => fa::Reply::Overloaded,
            ("3", 1) => fa::Reply::ApiError,
            _ => fa::Reply::Tool(fa::default_answer(c)),
        }
    }));
    let r = run(
        &env,
        &fake.env(),
        &["--model", "anthropic:claude-sonnet-4-5"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["requests"], 7);
    assert_eq!(env.rows("SELECT count(*) AS n FROM ai_results")[0]["n"], 4);
    let statuses: Vec<u16> = fake.requests_for(&id(2)).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![529, 200]);
}

#[test]
fn invalid_answers_get_one_repair_then_become_recorded_failures() {
    let env = setup();
    let fake = FakeOpenAi::with_script(Arc::new(|c: &fo::Call| {
        match (
            c.issue
                .as_deref()
                .and_then(|i| i.rsplit('#').next())
                .unwrap_or(""),
            c.attempt,
        ) {
            ("1", 1) => fo::Reply::Content("{\"recommended_labels\": [".into()),
            ("2", _) => fo::Reply::Answer(fo::answer_with(&["product::flux-capacitor"], 0.9)),
            ("3", 1) => fo::Reply::Refusal("I cannot help with that.".into()),
            ("4", _) => fo::Reply::Length("{\"recommended_labels\": [{\"label\": \"prod".into()),
            _ => fo::Reply::Answer(fo::default_answer(c)),
        }
    }));
    let r = run(&env, &fake.env(), &["--model", "openai:gpt-4o-mini"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("2 issue(s) failed"), "{}", r.stderr);
    let s = r.json();
    assert_eq!(
        (s["processed"].clone(), s["failed"].clone()),
        (json!(2), json!(2))
    );
    // #1 was repaired: the second request replays the bad answer and says what was wrong.
    let q = fake.requests_for(&id(1));
    assert_eq!(q.len(), 2);
    let msgs = q[1].body["messages"].as_array().unwrap();
    assert_eq!(
        msgs[2],
        json!({"role": "assistant", "content": "{\"recommended_labels\": ["})
    );
    assert!(msgs[3]["content"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    // #2 answered outside the taxonomy twice: a failure with its reason, never a result.
    assert_eq!(fake.requests_for(&id(2)).len(), 2);
    assert!(!result_file(&env, 2).exists());
    assert_eq!(
        env.rows(&format!(
            "SELECT count(*) AS n FROM ai_results WHERE issue_id = '{}'",
            id(2)
        ))[0]["n"],
        0
    );
    let failure: Value = serde_json::from_slice(
        &std::fs::read(env.data().join(format!(
            "results/failures/{ORG}_{REPO}_issue_2_product-labeling.json"
        )))
        .unwrap(),
    )
    .unwrap();
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("not in the taxonomy"),
        "{failure}"
    );
    assert_eq!(failure["requests"], 2);
    let reasons: Vec<String> = s["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("cut off")), "{reasons:?}");
    // #3 refused once, then answered: stored.
    assert!(result_file(&env, 3).exists());
    // A later successful run clears the failure record.
    fake.set_script(Arc::new(|c: &fo::Call| {
        fo::Reply::Answer(fo::default_answer(c))
    }));
    let again = run(&env, &fake.env(), &["--model", "openai:gpt-4o-mini"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!env
        .data()
        .join(format!(
            "results/failures/{ORG}_{REPO}_issue_2_product-labeling.json"
        ))
        .exists());
}

#[test]
fn timeouts_are_retried() {
    let env = setup();
    let fake = FakeOpenAi::with_script(Arc::new(|c: &fo::Call| {
        if c.issue.as_deref().is_some_and(|i| i.ends_with("#1")) && c.attempt == 1 {
            fo::Reply::Hang(Duration::from_secs(30))
        } else {
            fo::Reply::Answer(fo::default_answer(c))
        }
    }));
    let r = run(
        &env,
        &fake.env(),
        &["--model", "openai:gpt-4o-mini", "--request-timeout", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["processed"], 4);
    assert_eq!(fake.requests_for(&id(1)).len(), 2);
}

#[test]
fn a_rejected_key_stops_the_run_and_never_leaks() {
    let env = setup();
    let fake = FakeOpenAi::start();
    let wrong = "sk-wrong-SECRETVALUE-987654321";
    let vars = vec![
        ("OPENAI_BASE_URL", fake.url.clone()),
        ("OPENAI_API_KEY", wrong.to_string()),
    ];
    let mut c = env.cmd();
    for (k, v) in &vars {
        c.env(k, v);
    }
    let out = c
        .args([
            "-vvv",
            "process",
            "product-labeling",
            "--org",
            ORG,
            "--model",
            "openai:gpt-4o-mini",
            "--concurrency",
            "1",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid_api_key"), "{stderr}");
    // One request, no retry, nothing else started.
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.requests()[0].status, 401);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["not_started"], 3);
    // The fake echoes a masked key like OpenAI does; neither form may surface anywhere.
    for needle in [wrong, "SECRETVALUE", "4321"] {
        assert!(
            !stderr.contains(needle),
            "{needle} leaked to stderr: {stderr}"
        );
        assert!(!contains(&out.stdout, needle), "{needle} leaked to stdout");
        for (path, bytes) in all_files(&env.data()) {
            assert!(
                !contains(&bytes, needle),
                "{needle} leaked into {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_successful_verbose_run_writes_the_key_nowhere() {
    let env = setup();
    let fake = FakeAnthropic::start();
    let mut c = env.cmd();
    for (k, v) in fake.env() {
        c.env(k, v);
    }
    let out = c
        .args([
            "-vvv",
            "process",
            "product-labeling",
            "--org",
            ORG,
            "--model",
            "anthropic:claude-haiku-4-5",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!contains(&out.stderr, fa::KEY) && !contains(&out.stdout, fa::KEY));
    for (path, bytes) in all_files(&env.data()) {
        assert!(
            !contains(&bytes, fa::KEY),
            "key leaked into {}",
            path.display()
        );
    }
}

#[test]
fn exhausted_quota_is_not_retried_and_stops_new_requests() {
    let env = setup();
    let fake = FakeOpenAi::with_script(Arc::new(|_c: &fo::Call| fo::Reply::QuotaExceeded));
    let r = run(
        &env,
        &fake.env(),
        &["--model", "openai:gpt-4o-mini", "--concurrency", "1"],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("insufficient_quota"), "{}", r.stderr);
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(env.rows("SELECT count(*) AS n FROM ai_results")[0]["n"], 0);
}

#[test]
fn dry_run_estimates_tokens_and_cost_and_calls_nothing() {
    let env = setup();
    let fake = FakeOpenAi::start();
    let r = run(
        &env,
        &fake.env(),
        &["--model", "openai:gpt-4o-mini", "--dry-run"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
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
    let r = run(&env, &[], &["--model", "openai:my-finetune", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["est_cost_usd"], Value::Null);
}

#[test]
fn missing_keys_bad_settings_and_bad_taxonomies_are_user_errors() {
    let env = setup();
    let r = run(&env, &[], &["--model", "openai:gpt-4o-mini"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("OPENAI_API_KEY is not set"),
        "{}",
        r.stderr
    );
    let r = run(
        &env,
        &[],
        &[
            "--model",
            "anthropic:claude-haiku-4-5",
            "--setting",
            "temperature=1.5",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("temperature"), "{}", r.stderr);
    let r = run(
        &env,
        &[],
        &["--model", "openai:o3-mini", "--setting", "temperature=0.2"],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("reasoning model"), "{}", r.stderr);
    let r = run(&env, &[], &["--model", "gemini:pro"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown provider"), "{}", r.stderr);
    let r = run(&env, &[], &["--taxonomy", "/nonexistent/taxonomy.toml"]);
    assert_eq!(r.code, 1);
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(&bad, "name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'\nsignals = [{pattern = '(unclosed'}]").unwrap();
    let r = run(&env, &[], &["--taxonomy", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not a valid regex"), "{}", r.stderr);
    let r = run(&env, &[], &["--repo", "no-such-repo"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no stored issues"), "{}", r.stderr);
    assert_eq!(env.rows("SELECT count(*) AS n FROM ai_results")[0]["n"], 0);
}

#[test]
fn a_custom_taxonomy_replaces_the_default() {
    let env = setup();
    let t = env.dir.path().join("areas.toml");
    std::fs::write(
        &t,
        r#"
name = "areas"
[rules]
threshold = 1.0
[[labels]]
name = "area::billing"
description = "Invoices, payments and billing contacts."
signals = [{ pattern = 'invoice|billing', weight = 2.0 }]
[[labels]]
name = "area::install"
description = "Installation problems."
signals = [{ pattern = '\binstall', weight = 1.0 }]
"#,
    )
    .unwrap();
    let r = run(&env, &[], &["--taxonomy", t.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
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
    let r = run(
        &env,
        &fake.env(),
        &[
            "--model",
            "openai:gpt-4o-mini",
            "--taxonomy",
            t.to_str().unwrap(),
            "--reprocess",
            "--repo",
            REPO,
            "--issue-number",
            "4",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
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
    let r = run(
        &env,
        &fake.env(),
        &["--model", "openai:gpt-4o-mini", "--token-budget", "2000"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
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
    let doc: Value = serde_json::from_slice(&std::fs::read(result_file(&env, 9)).unwrap()).unwrap();
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
        .args([
            "process",
            "product-labeling",
            "--org",
            ORG,
            "--model",
            "openai:gpt-4o-mini",
            "--concurrency",
            "1",
            "--format",
            "json",
        ])
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
    let r = run(&env, &[], &["--repo", REPO, "--issue-number", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
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
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["model"], "rules");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn anthropic_repairs_answer_the_tool_use_and_cut_offs_fail() {
    let env = setup();
    let fake = FakeAnthropic::with_script(Arc::new(|c: &fa::Call| {
        match (
            c.issue
                .as_deref()
                .and_then(|i| i.rsplit('#').next())
                .unwrap_or(""),
            c.attempt,
        ) {
            ("1", 1) => fa::Reply::Tool(
                json!({"recommended_labels": [{"label": "product::nope", "confidence": 0.5, "reasoning": "r"}],
                "current_labels_assessment": [], "confidence": 0.5, "summary": "s", "reasoning": "r"}),
            ),
            ("2", 1) => fa::Reply::Text("It is about troubleshoot.".into()),
            ("3", _) => fa::Reply::MaxTokens,
            _ => fa::Reply::Tool(fa::default_answer(c)),
        }
    }));
    let r = run(
        &env,
        &fake.env(),
        &["--model", "anthropic:claude-haiku-4-5"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let s = r.json();
    assert_eq!(
        (s["processed"].clone(), s["failed"].clone()),
        (json!(3), json!(1))
    );
    // #1: the rejected tool call is answered by an error tool_result, which the fake accepts.
    let q = fake.requests_for(&id(1));
    assert_eq!(
        q.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![200, 200]
    );
    let msgs = q[1].body["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert_eq!(msgs[2]["content"][0]["is_error"], true);
    assert!(msgs[2]["content"][0]["content"]
        .as_str()
        .unwrap()
        .contains("not in the taxonomy"));
    // #2: a text answer is replayed as text and corrected by a plain user turn.
    let q = fake.requests_for(&id(2));
    assert_eq!(q.len(), 2);
    assert!(q[1].body["messages"][2]["content"]
        .as_str()
        .unwrap()
        .contains("without calling the tool"));
    // #3: cut off twice: a recorded failure.
    assert_eq!(fake.requests_for(&id(3)).len(), 2);
    assert!(s["failures"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
    assert!(!result_file(&env, 3).exists());
}

#[test]
fn reasoning_models_get_their_own_parameters() {
    let env = setup();
    let fake = FakeOpenAi::start();
    let r = run(
        &env,
        &fake.env(),
        &[
            "--model",
            "openai:o4-mini",
            "--setting",
            "reasoning_effort=low",
            "--repo",
            REPO,
            "--issue-number",
            "1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let body = &fake.requests()[0].body;
    assert_eq!(body["reasoning_effort"], "low");
    assert!(body.get("temperature").is_none());
    assert!(body["max_completion_tokens"].as_u64().unwrap() > 2000);
    // Non-reasoning models take the temperature and completion budget given.
    let r = run(
        &env,
        &fake.env(),
        &[
            "--model",
            "openai:gpt-4o-mini",
            "--setting",
            "temperature=0.3",
            "--setting",
            "max_completion_tokens=500",
            "--reprocess",
            "--repo",
            REPO,
            "--issue-number",
            "1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let body = &fake.requests()[1].body;
    assert_eq!(
        (
            body["temperature"].clone(),
            body["max_completion_tokens"].clone()
        ),
        (json!(0.3), json!(500))
    );
}

/// The fakes refuse what the real services refuse, so a test passing against them means the
/// client's requests are acceptable (these are the requests our client must never send).
#[tokio::test]
async fn the_fakes_are_as_strict_as_the_services() {
    let openai = FakeOpenAi::start();
    let anthropic = FakeAnthropic::start();
    let http = reqwest::Client::new();
    let post = |url: String, body: Value, headers: Vec<(&'static str, String)>| {
        let mut r = http.post(url).json(&body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    let bearer = vec![("authorization", format!("Bearer {}", fo::KEY))];
    let chat = format!("{}/chat/completions", openai.url);
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"model": "o3-mini", "messages": msgs, "temperature": 0.2}),
            400,
            "unsupported_value",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": msgs, "colour": 1}),
            400,
            "Unrecognized request argument",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": []}),
            400,
            "too short",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": msgs, "response_format": {"type": "json_schema",
            "json_schema": {"name": "bad name", "schema": {}}}}),
            400,
            "does not match pattern",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": msgs, "response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "strict": true, "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}}}),
            400,
            "Missing 'a'",
        ),
    ];
    for (body, status, text) in cases {
        let r = post(chat.clone(), body.clone(), bearer.clone())
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        assert!(r.headers().contains_key("x-request-id"));
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"]["message"].as_str().unwrap().contains(text) || e["error"]["code"] == text,
            "{e}"
        );
    }
    let r = post(
        chat.clone(),
        json!({"model": "gpt-4o-mini", "messages": msgs}),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let messages = format!("{}/v1/messages", anthropic.url);
    let key = vec![
        ("x-api-key", fa::KEY.to_string()),
        ("anthropic-version", fa::VERSION.to_string()),
    ];
    let base = json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("temperature", json!(1.5)), "temperature"),
        (
            with("response_format", json!({})),
            "Extra inputs are not permitted",
        ),
        (
            with("tool_choice", json!({"type": "tool", "name": "missing"})),
            "not found in provided tools",
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}]}, {"role": "user", "content": "no result"}]),
            ),
            "without `tool_result`",
        ),
        (with("max_tokens", json!(0)), "greater than or equal to 1"),
    ];
    for (body, text) in cases {
        let r = post(messages.clone(), body.clone(), key.clone())
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        assert!(r.headers().contains_key("request-id"));
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["type"], "error");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(text),
            "{e}"
        );
    }
    let r = post(
        messages.clone(),
        base.clone(),
        vec![("x-api-key", fa::KEY.to_string())],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400, "anthropic-version is required");
    let r = post(
        messages,
        base,
        vec![("anthropic-version", fa::VERSION.to_string())],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn retries_are_bounded_and_rate_limits_have_their_own_budget() {
    let env = setup();
    let fake = FakeOpenAi::with_script(Arc::new(|c: &fo::Call| {
        match (
            c.issue
                .as_deref()
                .and_then(|i| i.rsplit('#').next())
                .unwrap_or(""),
            c.attempt,
        ) {
            ("1", 1..=3) => fo::Reply::RateLimited { retry_after_ms: 5 },
            ("2", _) => fo::Reply::Overloaded {
                retry_after_ms: Some(5),
            },
            ("3", _) => fo::Reply::RateLimited { retry_after_ms: 5 },
            _ => fo::Reply::Answer(fo::default_answer(c)),
        }
    }));
    let r = run(
        &env,
        &fake.env(),
        &[
            "--model",
            "openai:gpt-4o-mini",
            "--max-retries",
            "1",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let s = r.json();
    assert_eq!(
        (s["processed"].clone(), s["failed"].clone()),
        (json!(2), json!(2))
    );
    // Three 429s are waited out although --max-retries is 1 …
    assert_eq!(fake.requests_for(&id(1)).len(), 4);
    assert!(result_file(&env, 1).exists());
    // … while overloads stop after 1 retry, and endless 429s after 20.
    assert_eq!(fake.requests_for(&id(2)).len(), 2);
    assert_eq!(fake.requests_for(&id(3)).len(), 21);
    let reasons = s["failures"].to_string();
    assert!(
        reasons.contains("after 2 attempts") && reasons.contains("after 21 attempts"),
        "{reasons}"
    );
}
