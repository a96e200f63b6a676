//! Hostile or absurd input never panics, stalls, leaks or writes: provider headers asking for
//! centuries, absurd flags, unknown processors, terminal escape sequences in issue text, a `.env`
//! in a parent folder, SQL that is not a query, and models the price table does not know.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use predicates::prelude::*;
use serde_json::json;

use crate::fakes::openai::FakeOpenAi;
use crate::support::{labeling_args, stored_issue, Env};

fn one_issue(env: &Env, title: &str) {
    env.import_json(&json!([stored_issue(
        "acme",
        "widgets",
        1,
        title,
        "the kotsadm pod crashes",
        &[],
        &[]
    )]));
}

/// A chat-completions server whose every answer is a 429 asking to wait `retry_after` (an
/// absurd value), counting the requests it gets.
fn absurd_server(
    header: &'static str,
    value: &'static str,
) -> (String, Arc<AtomicUsize>, impl Drop) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let served = crate::fakes::serve::spawn(listener, 1, true, move || {
        axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        [(header, value), ("content-type", "application/json")],
                        r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                    )
                }
            }),
        )
    });
    (url, hits, served)
}

#[test]
fn absurd_server_delays_are_clamped_and_never_panic_or_stall() {
    for (header, value) in [("retry-after", "1e20"), ("retry-after-ms", "1e300")] {
        let env = Env::new();
        one_issue(&env, "kotsadm crash");
        let (url, hits, _served) = absurd_server(header, value);
        let r = env.run_json(
            &[
                ("OPENAI_API_KEY", "sk-test".into()),
                ("OPENAI_BASE_URL", url),
            ],
            &labeling_args("acme", "openai:gpt-4o-mini", &[]),
        );
        // The clamped wait (15 minutes) is still longer than a request waits (120 s by
        // default): the item fails at once, saying so, instead of sleeping or overflowing.
        assert_eq!(r.code, 1, "{header}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(
            r.stderr.contains("the server asked to wait 900s"),
            "{header}: {}",
            r.stderr
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{header}");
    }
}

#[test]
fn absurd_flags_are_usage_errors_and_unknown_processors_are_listed() {
    let env = Env::new();
    for value in ["1e300", "-1", "NaN", "inf"] {
        env.cmd()
            .args([&format!("--lock-timeout={value}"), "status"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--lock-timeout"))
            .stderr(predicate::str::contains("panicked").not());
    }
    env.cmd()
        .env("GITHUB_ANALYSIS_LOCK_TIMEOUT", "1e300")
        .arg("status")
        .assert()
        .code(2);
    env.cmd()
        .args(["process", "no-such-processor", "--org", "acme"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "unknown processor \"no-such-processor\"; known processors: product-labeling",
        ));
}

#[test]
fn escape_sequences_in_issue_text_are_shown_escaped_on_terminals_only() {
    let env = Env::new();
    let hostile = "clear\u{1b}[2J\u{1b}]0;pwned\u{7} screen";
    one_issue(&env, hostile);
    let table = env
        .cmd()
        .args(["query", "sql", "SELECT title FROM issues"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text}"
    );
    assert!(text.contains("clear\\u{1b}[2J"), "{text}");
    // Machine formats stay exact.
    let rows = env.rows("SELECT title FROM issues");
    assert_eq!(rows[0]["title"], hostile);
    let csv = env
        .cmd()
        .args([
            "--format",
            "csv",
            "query",
            "sql",
            "SELECT title FROM issues",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&csv.stdout).contains(hostile));
}

#[test]
fn a_dotenv_is_read_from_the_working_directory_only() {
    let env = Env::new();
    one_issue(&env, "kotsadm crash");
    let fake = FakeOpenAi::start();
    // A `.env` in a parent folder must not redirect the key (or choose the model).
    let child = env.dir.path().join("work");
    std::fs::create_dir_all(&child).unwrap();
    let dotenv = format!(
        "OPENAI_API_KEY={}\nOPENAI_BASE_URL={}\nGITHUB_ANALYSIS_MODEL=openai:gpt-4o-mini\n",
        crate::fakes::openai::KEY,
        fake.url
    );
    std::fs::write(env.dir.path().join(".env"), &dotenv).unwrap();
    env.cmd()
        .current_dir(&child)
        .args(["process", "product-labeling", "--org", "acme"])
        .assert()
        .success()
        .stderr(predicate::str::contains("using the offline `rules` model"));
    assert!(fake.requests().is_empty(), "the parent's .env was read");
    // The working directory's own `.env` is read.
    std::fs::write(child.join(".env"), &dotenv).unwrap();
    env.cmd()
        .current_dir(&child)
        .args([
            "process",
            "product-labeling",
            "--org",
            "acme",
            "--reprocess",
        ])
        .assert()
        .success();
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn user_sql_cannot_set_create_temporary_tables_or_copy_into_the_temp_directory() {
    let env = Env::new();
    one_issue(&env, "kotsadm crash");
    // DuckDB's temp directory beside the database: external access still allows it.
    let temp_dir = env.data().join("issues.duckdb.tmp");
    std::fs::create_dir_all(&temp_dir).unwrap();
    let target = temp_dir.join("leak.csv");
    for sql in [
        "SET threads = 1".to_string(),
        "CREATE TEMP TABLE t AS SELECT 1 AS x".to_string(),
        format!("COPY (SELECT * FROM issues) TO '{}'", target.display()),
        "ATTACH ':memory:' AS other".to_string(),
        "SELECT 1; CREATE TEMP TABLE t (x INT)".to_string(),
    ] {
        env.cmd()
            .args(["query", "sql", &sql])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("only queries can run here"));
    }
    assert!(!target.exists());
    // Queries of every read-only shape still run.
    for sql in [
        "SELECT count(*) AS n FROM issues",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
        "FROM issues SELECT title",
        "DESCRIBE issues",
        "SHOW TABLES",
    ] {
        env.cmd().args(["query", "sql", sql]).assert().success();
    }
}

#[test]
fn unknown_models_record_cost_as_unknown_never_another_models_price() {
    let env = Env::new();
    one_issue(&env, "kotsadm crash");
    let fake = FakeOpenAi::start();
    // `gpt-4o-mini-tts` starts like `gpt-4o-mini` but is another model.
    let r = env.run_json(
        &fake.env(),
        &labeling_args("acme", "openai:gpt-4o-mini-tts", &[]),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["cost_usd"], serde_json::Value::Null);
    let rows = env.rows("SELECT cost_usd FROM ai_results");
    assert_eq!(rows[0]["cost_usd"], serde_json::Value::Null);
    // A dated snapshot of a known family is priced like its family.
    let r = env.run_json(
        &fake.env(),
        &labeling_args("acme", "openai:gpt-4o-mini-2024-07-18", &["--reprocess"]),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json()["cost_usd"].as_f64().unwrap() > 0.0);
    let models = env.json(&["models"]);
    assert_eq!(models["prices_as_of"], "2026-12-02");
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["model"].as_str())
        .collect();
    assert!(names.contains(&"anthropic:claude-opus-4-6"));
    assert!(!names.contains(&"openai:o1-mini"));
}
