//! The store holds up against bad input: an out-of-range or malformed item fails alone (never
//! its batch, never later syncs), two issues whose file names collide never overwrite each
//! other, and `import` streams files item by item (a cut-off file keeps what came before).

use crate::support::{read_json, stored_issue, Env};
use serde_json::{json, Value};

fn rest(org: &str, repo: &str, number: Value, comments: Value) -> Value {
    json!({
        "number": number, "title": format!("Issue {number}"), "state": "open", "body": "b",
        "comments": comments, "id": 42,
        "repository_url": format!("https://api.github.com/repos/{org}/{repo}"),
    })
}

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn an_out_of_range_number_fails_its_item_alone_never_the_batch_or_later_syncs() {
    let env = Env::new();
    // 2,100 good issues (more than one load chunk) around two that DuckDB's BIGINT cannot hold.
    let mut items: Vec<Value> = (1..=2_100)
        .map(|n| rest("acme", "app", json!(n), json!(1)))
        .collect();
    items.insert(
        1_000,
        rest("acme", "app", json!(9_223_372_036_854_775_808u64), json!(0)),
    );
    items.insert(
        2_000,
        rest(
            "acme",
            "app",
            json!(7),
            json!(18_446_744_073_709_551_615u64),
        ),
    );
    let lines: Vec<String> = items.iter().map(Value::to_string).collect();
    let file = write(&env, "dump.jsonl", &lines.join("\n"));
    let run = env.run_json(&[], &["import", &file]);
    run.fails_with("dump.jsonl: item 1001: issue number 9223372036854775808 is out of range");
    run.says("dump.jsonl: item 2001: comment count 18446744073709551615");
    let s = run.json();
    assert_eq!(s["failed"], 2);
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 2_100);

    // A file another tool wrote with such a number: `sync` skips it (exit 1, path and reason)
    // and loads the rest, every time, instead of failing with exit 2.
    let mut bad = stored_issue("acme", "app", 1, "t", "b", &[], &[]);
    bad["issue"]["number"] = json!(9_223_372_036_854_775_808u64);
    let bad_path = env
        .data()
        .join("issues/acme_app_issue_9223372036854775808.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let good = stored_issue("acme", "app", 9_000, "new one", "b", &[], &[]);
    std::fs::write(
        env.data().join("issues/acme_app_issue_9000.json"),
        good.to_string(),
    )
    .unwrap();
    for round in 0..2 {
        let run = env.run_json(&[], &["sync"]);
        assert_eq!(run.code, 1, "round {round}: {}", run.stderr);
        run.says("issues/acme_app_issue_9223372036854775808.json: issue number");
        assert_eq!(run.json()["failed"], 1);
    }
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 2_101);
    assert!(bad_path.exists(), "the bad file is reported, never deleted");
}

#[test]
fn a_malformed_item_fails_alone_and_a_cut_off_file_keeps_what_came_before() {
    let env = Env::new();
    let one = rest("acme", "app", json!(1), json!(0)).to_string();
    let three = rest("acme", "app", json!(3), json!(0)).to_string();
    let file = write(
        &env,
        "lines.jsonl",
        &format!("{one}\n{{oops: 1}}\n{{\"number\": \"two\"}}\n{three}\n"),
    );
    let cut = write(
        &env,
        "cut.json",
        &format!(
            "[{},{}, {{\"number\": 6, \"ti",
            rest("acme", "app", json!(4), json!(0)),
            rest("acme", "app", json!(5), json!(0))
        ),
    );
    let run = env.run_json(&[], &["import", &file, &cut]);
    run.fails_with("lines.jsonl: item 2: not valid JSON");
    run.says("lines.jsonl: item 3: not a GitHub issue object");
    assert!(
        run.stderr
            .contains("cut.json: not valid JSON or JSON Lines at byte")
            && run
                .stderr
                .contains("the file ends inside a value; the 2 item(s) before it were read"),
        "{}",
        run.stderr
    );
    assert_eq!(
        env.scalar("SELECT string_agg(number::VARCHAR, ',' ORDER BY number) FROM issues"),
        "1,3,4,5"
    );
}

#[test]
fn colliding_file_names_are_refused_and_never_overwrite_another_issue() {
    let env = Env::new();
    // `a_b/c#1` and `a/b_c#1` both map to issues/a_b_c_issue_1.json.
    let both = json!([
        rest("a_b", "c", json!(1), json!(0)),
        rest("a", "b_c", json!(1), json!(0)),
    ]);
    let file = write(&env, "both.json", &both.to_string());
    let run = env.run_json(&[], &["import", &file]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "both.json: item 2: a/b_c#1 was not stored: its file name issues/a_b_c_issue_1.json is already used by a_b/c#1"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["written"], 1);
    assert_eq!(
        env.scalar("SELECT string_agg(id, ',') FROM issues"),
        "a_b/c#1"
    );

    // In a later run too: the file on disk keeps its issue.
    let second = write(
        &env,
        "second.json",
        &rest("a", "b_c", json!(1), json!(0)).to_string(),
    );
    env.run_json(&[], &["import", &second])
        .fails_with("a/b_c#1 was not stored");
    let held: Value = read_json(env.data().join("issues/a_b_c_issue_1.json"));
    assert_eq!(
        (held["org"].as_str(), held["repo"].as_str()),
        (Some("a_b"), Some("c"))
    );
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 1);
    assert_eq!(env.json(&["sync"])["failed"], 0);
}

#[test]
fn an_import_interrupted_before_loading_is_completed_by_the_next_one() {
    let env = Env::new();
    let issues = json!([stored_issue("acme", "app", 1, "t", "b", &["bug"], &["c"])]);
    let s = env.import_json(&issues);
    assert_eq!(s["written"], 1);
    // The database is lost (or the run stopped before loading): the file stays, unchanged.
    std::fs::remove_file(env.db_file()).unwrap();
    let s = env.import_json(&issues);
    assert_eq!(
        (s["written"].clone(), s["unchanged"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(env.scalar("SELECT count(*) FROM comments"), 1);
    assert_eq!(env.json(&["status"])["in_sync"], true);
}
