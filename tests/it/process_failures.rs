//! CLI tests of how real-time processing fails well: retries of rate limits, server errors,
//! overloads and timeouts (bounded, with their own budgets), one repair request for an invalid
//! answer then a recorded failure, a rejected key or spent quota stopping the run, keys never
//! leaking, and fakes as strict as the services.

use std::sync::Arc;
use std::time::Duration;

use crate::fakes::anthropic::{self as fa, FakeAnthropic};
use crate::fakes::openai::{self as fo, FakeOpenAi};
use crate::process::{id, result_file, run_model, setup, ANTHROPIC, OPENAI, ORG, REPO};
use crate::support::{labeling_args, read_json};
use serde_json::{json, Value};

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
fn rate_limits_server_errors_and_overloads_are_retried() {
    let env = setup();
    let fake = FakeOpenAi::with_script(Arc::new(|c: &fo::Call| match (c.number(), c.attempt) {
        ("1", 1) => fo::Reply::RateLimited { retry_after_ms: 10 },
        ("2", 1) => fo::Reply::ServerError,
        ("3", 1 | 2) => fo::Reply::Overloaded {
            retry_after_ms: Some(10),
        },
        _ => fo::Reply::Answer(fo::default_answer(c)),
    }));
    let r = run_model(&env, &fake.env(), OPENAI, &[]).ok();
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
    let doc: Value = read_json(result_file(&env, 3));
    assert_eq!(doc["usage"]["requests"], 3);
}

#[test]
fn anthropic_429_529_and_500_are_retried() {
    let env = setup();
    let fake = FakeAnthropic::with_script(Arc::new(|c: &fa::Call| match (c.number(), c.attempt) {
        ("1", 1) => fa::Reply::RateLimited { reset_ms: 20 },
        ("2", 1) => fa::Reply::Overloaded,
        ("3", 1) => fa::Reply::ApiError,
        _ => fa::Reply::Tool(fa::default_answer(c)),
    }));
    let r = run_model(&env, &fake.env(), "anthropic:claude-sonnet-4-5", &[]).ok();
    assert_eq!(r.json()["requests"], 7);
    assert_eq!(env.rows("SELECT count(*) AS n FROM ai_results")[0]["n"], 4);
    let statuses: Vec<u16> = fake.requests_for(&id(2)).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![529, 200]);
}

#[test]
fn invalid_answers_get_one_repair_then_become_recorded_failures() {
    let env = setup();
    let fake = FakeOpenAi::with_script(Arc::new(|c: &fo::Call| match (c.number(), c.attempt) {
        ("1", 1) => fo::Reply::Content("{\"recommended_labels\": [".into()),
        ("2", _) => fo::Reply::Answer(fo::answer_with(&["product::flux-capacitor"], 0.9)),
        ("3", 1) => fo::Reply::Refusal("I cannot help with that.".into()),
        ("4", _) => fo::Reply::Length("{\"recommended_labels\": [{\"label\": \"prod".into()),
        _ => fo::Reply::Answer(fo::default_answer(c)),
    }));
    let r = run_model(&env, &fake.env(), OPENAI, &[]);
    r.fails_with("2 issue(s) failed");
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
    let failure: Value = read_json(env.data().join(format!(
        "results/failures/{ORG}_{REPO}_issue_2_product-labeling.json"
    )));
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
    run_model(&env, &fake.env(), OPENAI, &[]).ok();
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
    let r = run_model(&env, &fake.env(), OPENAI, &["--request-timeout", "2"]).ok();
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
    let out = env
        .cmd_with(&vars)
        .arg("-vvv")
        .args(labeling_args(
            ORG,
            OPENAI,
            &["--concurrency", "1", "--format", "json"],
        ))
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
    let out = env
        .cmd_with(&fake.env())
        .arg("-vvv")
        .args(labeling_args(ORG, ANTHROPIC, &[]))
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
    run_model(&env, &fake.env(), OPENAI, &["--concurrency", "1"]).fails_with("insufficient_quota");
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(env.rows("SELECT count(*) AS n FROM ai_results")[0]["n"], 0);
}

#[test]
fn anthropic_repairs_answer_the_tool_use_and_cut_offs_fail() {
    let env = setup();
    let fake = FakeAnthropic::with_script(Arc::new(|c: &fa::Call| match (c.number(), c.attempt) {
        ("1", 1) => fa::Reply::Tool(
            json!({"recommended_labels": [{"label": "product::nope", "confidence": 0.5, "reasoning": "r"}],
                "current_labels_assessment": [], "confidence": 0.5, "summary": "s", "reasoning": "r"}),
        ),
        ("2", 1) => fa::Reply::Text("It is about troubleshoot.".into()),
        ("3", _) => fa::Reply::MaxTokens,
        _ => fa::Reply::Tool(fa::default_answer(c)),
    }));
    let r = run_model(&env, &fake.env(), ANTHROPIC, &[]);
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
    let fake = FakeOpenAi::with_script(Arc::new(|c: &fo::Call| match (c.number(), c.attempt) {
        ("1", 1..=3) => fo::Reply::RateLimited { retry_after_ms: 5 },
        ("2", _) => fo::Reply::Overloaded {
            retry_after_ms: Some(5),
        },
        ("3", _) => fo::Reply::RateLimited { retry_after_ms: 5 },
        _ => fo::Reply::Answer(fo::default_answer(c)),
    }));
    let r = run_model(
        &env,
        &fake.env(),
        OPENAI,
        &["--max-retries", "1", "--concurrency", "1"],
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
