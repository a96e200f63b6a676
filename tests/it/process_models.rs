//! CLI tests of the model-capability table and the adaptive fallback against the fakes' strict
//! modes: newer OpenAI families (gpt-5.1+ take no temperature while reasoning, each family its
//! own reasoning efforts, reasoning models no top_p), newer Claude models (temperature or top_p,
//! not both; thinking excludes forced tool use and temperature), and compatible servers that
//! refuse a parameter.

use serde_json::{json, Value};

use crate::fakes::anthropic::FakeAnthropic;
use crate::fakes::openai::FakeOpenAi;
use crate::process::{run_model, setup, ANTHROPIC, OPENAI, REPO};

fn statuses(bodies: &[(u16, Value)]) -> Vec<u16> {
    bodies.iter().map(|(s, _)| *s).collect()
}

fn openai_log(fake: &FakeOpenAi) -> Vec<(u16, Value)> {
    fake.requests()
        .into_iter()
        .map(|r| (r.status, r.body))
        .collect()
}

fn anthropic_log(fake: &FakeAnthropic) -> Vec<(u16, Value)> {
    fake.requests()
        .into_iter()
        .map(|r| (r.status, r.body))
        .collect()
}

#[test]
fn newer_openai_families_get_what_the_table_says_without_a_refusal() {
    let env = setup();
    let fake = FakeOpenAi::start();
    // gpt-5.1 reasoning: no temperature (it would be refused while reasoning).
    run_model(
        &env,
        &fake.env(),
        "openai:gpt-5.1",
        &["--setting", "reasoning_effort=high", "--concurrency", "1"],
    )
    .ok();
    let log = openai_log(&fake);
    assert_eq!(statuses(&log), vec![200; 4]);
    assert!(log.iter().all(|(_, b)| b.get("temperature").is_none()));
    assert_eq!(log[0].1["reasoning_effort"], "high");
    // gpt-5.1 without reasoning (its default): temperature 0 for reproducible labels.
    run_model(
        &env,
        &fake.env(),
        "openai:gpt-5.1",
        &["--reprocess", "--concurrency", "1"],
    )
    .ok();
    let log = openai_log(&fake);
    assert_eq!(log.len(), 8);
    assert_eq!(log[4].1["temperature"], json!(0.0));
    // Values the family does not take are refused before anything is sent.
    for (model, setting, says) in [
        (
            "openai:gpt-5.1",
            "reasoning_effort=minimal",
            "none, low, medium, high",
        ),
        (
            "openai:gpt-5",
            "reasoning_effort=none",
            "minimal, low, medium, high",
        ),
        (
            "openai:o3-mini",
            "temperature=0.2",
            "only accepts the default temperature",
        ),
        (
            "openai:gpt-4.1",
            "reasoning_effort=low",
            "not a reasoning model",
        ),
    ] {
        let r = run_model(
            &env,
            &fake.env(),
            model,
            &["--setting", setting, "--reprocess"],
        );
        assert_eq!(r.code, 1, "{model} {setting}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{model} {setting}: {}", r.stderr);
    }
    run_model(
        &env,
        &fake.env(),
        "openai:gpt-5.2",
        &[
            "--setting",
            "reasoning_effort=xhigh",
            "--setting",
            "temperature=0.5",
            "--reprocess",
        ],
    )
    .fails_with("no temperature while reasoning");
    assert_eq!(
        fake.requests().len(),
        8,
        "nothing sent for refused settings"
    );
}

#[test]
fn an_unsupported_openai_parameter_is_dropped_retried_once_and_remembered() {
    let env = setup();
    let fake = FakeOpenAi::start();
    // Reasoning models refuse top_p; the table does not track it, the fallback learns it.
    let r = run_model(
        &env,
        &fake.env(),
        "openai:o3-mini",
        &["--setting", "top_p=0.9", "--concurrency", "1"],
    )
    .ok();
    let log = openai_log(&fake);
    assert_eq!(
        statuses(&log),
        vec![400, 200, 200, 200, 200],
        "{}",
        r.stderr
    );
    assert_eq!(log[0].1["top_p"], json!(0.9));
    assert!(log[1..].iter().all(|(_, b)| b.get("top_p").is_none()));
    r.says("without `top_p`");
    assert_eq!(r.stderr.matches("without `top_p`").count(), 1, "said once");
    let s = r.json();
    assert_eq!(
        (s["processed"].as_u64(), s["requests"].as_u64()),
        (Some(4), Some(5))
    );
}

#[test]
fn a_compatible_server_refusing_temperature_gets_requests_without_it() {
    let env = setup();
    let fake = FakeOpenAi::start();
    fake.reject_params(&["temperature"]);
    let r = run_model(&env, &fake.env(), OPENAI, &["--concurrency", "2"]).ok();
    let log = openai_log(&fake);
    // Each request in flight when the first refusal came back is refused once, never twice.
    let refused = log.iter().filter(|(s, _)| *s == 400).count();
    assert!((1..=2).contains(&refused), "{:?}", statuses(&log));
    assert_eq!(log.len(), 4 + refused);
    assert!(log
        .iter()
        .all(|(s, b)| *s == 400 || b.get("temperature").is_none()));
    r.says("without `temperature`");
}

#[test]
fn a_refusal_the_fallback_cannot_fix_still_fails_the_item() {
    let env = setup();
    let fake = FakeOpenAi::start();
    // The user's own setting is refused too: the second request has no top_p left to drop.
    fake.reject_params(&["top_p", "max_completion_tokens"]);
    let r = run_model(
        &env,
        &fake.env(),
        OPENAI,
        &["--setting", "top_p=0.5", "--concurrency", "1"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let s = r.json();
    assert_eq!(s["processed"], 0);
    // Issue 1: top_p refused, dropped, sent once more: max_completion_tokens refused, which the
    // fallback does not touch, so the item fails; the others: one refusal each, no retry.
    assert_eq!(s["requests"], 5, "{}", r.stderr);
    assert_eq!(s["failed"], 4);
    r.says("max_completion_tokens");
}

#[test]
fn newer_claude_models_get_temperature_or_top_p_and_thinking_without_forced_tools() {
    let env = setup();
    let fake = FakeAnthropic::start();
    // temperature (our default 0) + the user's top_p: refused by Haiku 4.5, our default dropped.
    let r = run_model(
        &env,
        &fake.env(),
        ANTHROPIC,
        &["--setting", "top_p=0.9", "--concurrency", "1"],
    )
    .ok();
    let log = anthropic_log(&fake);
    assert_eq!(
        statuses(&log),
        vec![400, 200, 200, 200, 200],
        "{}",
        r.stderr
    );
    assert!(log[1..]
        .iter()
        .all(|(_, b)| b.get("temperature").is_none() && b["top_p"] == json!(0.9)));
    r.says("without `temperature`");
    // Thinking: tool offered (auto), no temperature, the answer (after its thinking block)
    // parsed from the tool call.
    let r = run_model(
        &env,
        &fake.env(),
        "anthropic:claude-sonnet-4-5",
        &[
            "--setting",
            "thinking_budget=2048",
            "--reprocess",
            "--concurrency",
            "1",
        ],
    )
    .ok();
    let log = anthropic_log(&fake);
    assert_eq!(statuses(&log[5..]), vec![200; 4]);
    let body = &log[5].1;
    assert_eq!(body["tool_choice"], json!({"type": "auto"}));
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert!(body.get("temperature").is_none());
    assert!(body["max_tokens"].as_u64().unwrap() > 2048);
    assert_eq!(r.json()["processed"], 4);
    // A model without thinking is refused up front.
    run_model(
        &env,
        &fake.env(),
        "anthropic:claude-3-5-haiku-latest",
        &["--setting", "thinking_budget=2048", "--reprocess"],
    )
    .fails_with("no extended thinking");
}

#[test]
fn reasoning_models_get_their_own_parameters() {
    let env = setup();
    let fake = FakeOpenAi::start();
    run_model(
        &env,
        &fake.env(),
        "openai:o4-mini",
        &[
            "--setting",
            "reasoning_effort=low",
            "--repo",
            REPO,
            "--issue-number",
            "1",
        ],
    )
    .ok();
    let body = &fake.requests()[0].body;
    assert_eq!(body["reasoning_effort"], "low");
    assert!(body.get("temperature").is_none());
    assert!(body["max_completion_tokens"].as_u64().unwrap() > 2000);
    // Non-reasoning models take the temperature and completion budget given.
    run_model(
        &env,
        &fake.env(),
        OPENAI,
        &[
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
    )
    .ok();
    let body = &fake.requests()[1].body;
    assert_eq!(
        (
            body["temperature"].clone(),
            body["max_completion_tokens"].clone()
        ),
        (json!(0.3), json!(500))
    );
}
