//! CLI tests of the foundation: import, sync, status, query, errors and exit codes.

use crate::support::{fixture, read_json, sample, Env};
use predicates::prelude::*;
use serde_json::json;

/// A new data dir holding the three rust-lang fixture issues.
fn rust_issues() -> Env {
    let env = Env::new();
    env.json(&["import", &fixture("rust-lang-issues.json")]);
    env
}

fn import_samples(env: &Env) -> serde_json::Value {
    env.json(&[
        "import",
        &sample("dotnet-corefx-issues.json"),
        &sample("webcompat-web-bugs.jsonl"),
    ])
}

#[test]
fn import_sample_data_then_query_it() {
    let env = Env::new();
    let s = import_samples(&env);
    assert_eq!(s["issues"], 400);
    assert_eq!(s["written"], 400);
    assert_eq!(s["failed"], 0);
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 400);
    assert_eq!(
        env.scalar("SELECT count(*) FROM issues WHERE org = 'webcompat' AND repo = 'web-bugs'"),
        100
    );
    // Labels of real REST objects, with colours and descriptions.
    assert_eq!(
        env.scalar(
            "SELECT description FROM labels WHERE issue_id = 'webcompat/web-bugs#71058' AND name = 'engine-gecko'"
        ),
        "The browser uses the Gecko rendering engine"
    );
    // GitHub's comment count survives although REST list objects carry no comment bodies.
    assert_eq!(
        env.scalar("SELECT comments_count || ' ' || state FROM issues WHERE id = 'webcompat/web-bugs#71056'"),
        "1 closed"
    );
    // Files follow the original layout, one per issue.
    let files = std::fs::read_dir(env.data().join("issues"))
        .unwrap()
        .count();
    assert_eq!(files, 400);
    assert!(env
        .data()
        .join("issues/dotnet_corefx_issue_29338.json")
        .exists());
    let status = env.json(&["status"]);
    assert_eq!(status["in_sync"], true);
    assert_eq!(status["json"]["files"], 400);
    assert_eq!(status["database"]["issues"], 400);
    assert_eq!(status["repositories"].as_array().unwrap().len(), 2);
}

#[test]
fn importing_again_rewrites_nothing() {
    let env = Env::new();
    import_samples(&env);
    let before = std::fs::metadata(env.data().join("issues/dotnet_corefx_issue_29338.json"))
        .unwrap()
        .modified()
        .unwrap();
    let s = import_samples(&env);
    assert_eq!(s["written"], 0);
    assert_eq!(s["unchanged"], 400);
    let after = std::fs::metadata(env.data().join("issues/dotnet_corefx_issue_29338.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 400);
}

#[test]
fn pull_requests_are_skipped_and_real_rest_fields_kept() {
    let env = Env::new();
    let s = env.json(&[
        "import",
        &fixture("rust-lang-issues.json"),
        &fixture("rust-lang-search-prs.json"),
    ]);
    assert_eq!(s["issues"], 3);
    assert_eq!(s["pull_requests_skipped"], 3);
    let rows = env.json(&[
        "query",
        "sql",
        "SELECT number, author, labels_count, comments_count, github_id, created_at FROM issues ORDER BY number",
    ]);
    assert_eq!(rows[0]["number"], 99554);
    assert_eq!(rows[0]["labels_count"], 9);
    assert_eq!(rows[0]["comments_count"], 5);
    assert!(rows[0]["github_id"].is_i64());
    assert!(rows[0]["author"].is_string());
    assert!(rows[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let stored: serde_json::Value =
        read_json(env.data().join("issues/rust-lang_rust_issue_99554.json"));
    assert_eq!(stored["org"], "rust-lang");
    assert_eq!(stored["issue"]["labels"].as_array().unwrap().len(), 9);
    assert!(stored["metadata"]["collection_timestamp"].is_string());
}

#[test]
fn import_needs_org_and_repo_when_the_object_has_no_repository_url() {
    let env = Env::new();
    let f = env.write_file(
        "one.json",
        r#"{"number": 5, "title": "t", "state": "open", "body": null}"#,
    );
    env.run(&["import", f.to_str().unwrap()])
        .fails_with("pass --org and --repo");
    env.cmd()
        .args([
            "import",
            f.to_str().unwrap(),
            "--org",
            "acme",
            "--repo",
            "app",
        ])
        .assert()
        .success();
    assert_eq!(env.scalar("SELECT id FROM issues"), "acme/app#5");
}

#[test]
fn invalid_names_are_refused_before_touching_a_path() {
    let env = Env::new();
    let f = env.write_file(
        "one.json",
        r#"{"number": 5, "title": "t", "state": "open"}"#,
    );
    for (org, repo) in [("..", "x"), ("acme", "../x"), ("a/b", "c")] {
        env.run(&["import", f.to_str().unwrap(), "--org", org, "--repo", repo])
            .fails_with("error: invalid")
            .opens_with("error: invalid");
    }
    assert!(!env.data().join("x").exists());
}

#[test]
fn malformed_json_names_the_file_and_the_rest_still_imports() {
    let env = Env::new();
    let bad = env.write_file("bad.json", "[{\"number\": 1,");
    env.run(&[
        "import",
        bad.to_str().unwrap(),
        &fixture("rust-lang-issues.json"),
    ])
    .fails_with("bad.json")
    .says("not valid JSON");
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 3);
}

#[test]
fn sync_adds_updates_removes_and_reports_bad_files() {
    let env = rust_issues();
    let s = env.json(&["sync"]);
    assert_eq!(
        (s["unchanged"].clone(), s["added"].clone()),
        (json!(3), json!(0))
    );

    let issues = env.data().join("issues");
    // Change one issue's title on disk.
    let p = issues.join("rust-lang_rust_issue_99554.json");
    let mut v: serde_json::Value = read_json(&p);
    v["issue"]["title"] = json!("Edited title");
    v["issue"]["labels"] = json!([{"name": "only-one", "color": null, "description": null}]);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    // Remove another, and add a broken file.
    std::fs::remove_file(issues.join("rust-lang_rust_issue_105782.json")).unwrap();
    std::fs::write(issues.join("broken_x_issue_1.json"), "{ not json").unwrap();

    let out = env
        .cmd()
        .args(["sync", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("issues/broken_x_issue_1.json"), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["updated"], 1);
    assert_eq!(s["removed"], 1);
    assert_eq!(s["failed"], 1);
    assert_eq!(s["unchanged"], 1);
    assert_eq!(
        env.scalar("SELECT title FROM issues WHERE number = 99554"),
        "Edited title"
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM labels WHERE issue_id = 'rust-lang/rust#99554'"),
        1
    );
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 2);
    let status = env.json(&["status"]);
    assert_eq!(status["in_sync"], false);

    std::fs::remove_file(issues.join("broken_x_issue_1.json")).unwrap();
    let s = env.json(&["sync", "--force"]);
    assert_eq!(s["updated"], 2);
    assert_eq!(env.json(&["status"])["in_sync"], true);
}

#[test]
fn sync_counts_touched_but_identical_files_as_unchanged() {
    let env = rust_issues();
    let p = env.data().join("issues/rust-lang_rust_issue_99554.json");
    let bytes = std::fs::read(&p).unwrap();
    let before = std::fs::metadata(&p).unwrap().modified().unwrap();
    std::fs::write(&p, bytes).unwrap();
    // A new mtime set explicitly (not by sleeping and hoping the clock ticked), so the file
    // is certainly a candidate that only its content hash shows to be unchanged.
    let later = before + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_ne!(std::fs::metadata(&p).unwrap().modified().unwrap(), before);
    assert_eq!(env.json(&["status"])["files_to_sync"], 1);
    let s = env.json(&["sync"]);
    assert_eq!(s["unchanged"], 3);
    assert_eq!(s["updated"], 0);
    assert_eq!(env.json(&["status"])["in_sync"], true);
}

#[test]
fn user_sql_is_read_only() {
    let env = rust_issues();
    for sql in [
        "DROP TABLE issues",
        "DELETE FROM issues",
        "INSERT INTO labels VALUES ('x', 'y', NULL, NULL)",
    ] {
        env.run(&["query", "sql", sql])
            .fails_with("error: query failed")
            .says("read-only");
    }
    // Writing files through SQL is refused as well.
    let target = env.dir.path().join("out.csv");
    let copy = format!("COPY issues TO '{}'", target.display());
    env.cmd().args(["query", "sql", &copy]).assert().code(1);
    assert!(!target.exists());
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 3);
}

#[test]
fn bad_sql_and_unknown_alias_are_user_errors() {
    let env = Env::new();
    env.run(&["query", "sql", "SELEC nothing"])
        .fails_with("syntax error")
        .opens_with("error: query failed");
    env.run(&["query", "sql", "SELECT * FROM no_such_table"])
        .fails_with("no_such_table");
    env.run(&["query", "alias", "nope"])
        .fails_with("unknown alias \"nope\"")
        .says("open_issues");
}

#[test]
fn query_formats_csv_json_and_limit() {
    let env = Env::new();
    let sql = "SELECT 1 AS n, 'a, \"b\"' AS s, NULL AS z, 2.5::DOUBLE AS f, true AS b, \
               TIMESTAMP '2024-01-02 03:04:05' AS t, [1, 2] AS l FROM range(3)";
    let out = env
        .cmd()
        .args(["query", "sql", sql, "--format", "csv", "--limit", "2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "n,s,z,f,b,t,l\n1,\"a, \"\"b\"\"\",,2.5,true,2024-01-02T03:04:05Z,\"[1,2]\"\n\
         1,\"a, \"\"b\"\"\",,2.5,true,2024-01-02T03:04:05Z,\"[1,2]\"\n"
    );
    let rows = env.json(&["query", "sql", sql]);
    assert_eq!(
        rows[0],
        json!({"n": 1, "s": "a, \"b\"", "z": null, "f": 2.5, "b": true,
               "t": "2024-01-02T03:04:05Z", "l": [1, 2]})
    );
    assert_eq!(rows.as_array().unwrap().len(), 3);
}

#[test]
fn aliases_run_and_label_summary_gains_ai_columns_with_results() {
    let env = Env::new();
    import_samples(&env);
    let list = env.json(&["query", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in ["open_issues", "label_summary", "repo_summary"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let repos = env.json(&["query", "alias", "repo_summary"]);
    assert_eq!(repos[0]["org"], "dotnet");
    assert_eq!(repos[0]["issues"], 300);
    let open = env.json(&["query", "alias", "open_issues", "--limit", "5"]);
    assert_eq!(open.as_array().unwrap().len(), 5);
    let labels = env.json(&["query", "alias", "label_summary"]);
    let find = |rows: &serde_json::Value, name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["label"] == name)
            .cloned()
            .unwrap()
    };
    // Counted independently from the JSONL: 87 webcompat issues carry engine-gecko, 38 open.
    assert_eq!(
        labels[0],
        json!({"label": "engine-gecko", "issues": 87, "open": 38, "closed": 49})
    );
    let net = find(&labels, "area-System.Net");
    assert!(net.get("ai_recommended").is_none());
    let net_issues = net["issues"].clone();

    // Results arrive (written here directly, as the processors will).
    {
        let conn = duckdb::Connection::open(env.db_file()).unwrap();
        conn.execute_batch(
            "INSERT INTO ai_results (issue_id, processor, model, provider, mode, confidence, result, created_at)
               VALUES ('dotnet/corefx#29338', 'product-labeling', 'rules', 'rules', 'realtime', 0.8, '{}', now());
             INSERT INTO ai_recommendations (issue_id, processor, kind, value, confidence, created_at)
               VALUES ('dotnet/corefx#29338', 'product-labeling', 'label', 'area-System.Net', 0.8, now()),
                      ('dotnet/corefx#29338', 'product-labeling', 'label', 'product::kots', 0.6, now());",
        )
        .unwrap();
    }
    let labels = env.json(&["query", "alias", "label_summary"]);
    let net = find(&labels, "area-System.Net");
    assert_eq!(net["issues"], net_issues);
    assert_eq!(net["ai_recommended"], 1);
    assert_eq!(net["ai_avg_confidence"], 0.8);
    let kots = find(&labels, "product::kots");
    assert_eq!(kots["issues"], 0);
    assert_eq!(kots["ai_recommended"], 1);
}

#[test]
fn a_locked_database_is_waited_for_then_refused_with_a_clear_message() {
    let env = rust_issues();
    let path = env.db_file();
    let holder = duckdb::Connection::open(&path).unwrap();
    env.run(&["--lock-timeout", "0.3", "sync"])
        .fails_with("is locked by another process")
        .says("--lock-timeout");
    // Released while the second process waits (it has said so): it proceeds.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_github-analysis"))
        .args(["--lock-timeout", "60", "sync"])
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_ANALYSIS_DATA_DIR", env.data())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(
        first.contains("is locked by another process; waiting"),
        "the second process must wait for the lock, said: {first:?}"
    );
    drop(holder);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{first}{rest}");
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 3);
}

#[test]
fn an_unwritable_data_dir_is_a_clear_error() {
    let env = Env::new();
    let file = env.dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    env.cmd()
        .env("GITHUB_ANALYSIS_DATA_DIR", &file)
        .args(["import", &fixture("rust-lang-issues.json")])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: "))
        .stderr(predicate::str::contains("not-a-dir"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn status_on_an_empty_data_dir_and_as_a_table() {
    let env = Env::new();
    let s = env.json(&["status"]);
    assert_eq!(s["json"]["files"], 0);
    assert_eq!(s["in_sync"], true);
    env.json(&["import", &fixture("rust-lang-issues.json")]);
    let out = env.cmd().arg("status").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let data = regex::escape(env.data().to_str().unwrap());
    // GitHub's comment count and the comment bodies stored are two figures with two names.
    let repo = &env.json(&["status"])["repositories"][0];
    assert_eq!(
        (
            repo["comments_on_github"].clone(),
            repo["comments_stored"].clone()
        ),
        (json!(6), json!(0))
    );
    insta::with_settings!({filters => vec![
        (data.as_str(), "[DATA]"),
        // Sizes vary with serialization details and DuckDB's block allocation.
        (r"\(\d+(\.\d+)? [KMG]?B\)", "([SIZE])"),
    ]}, {
        insta::assert_snapshot!(text);
    });
}

#[test]
fn exit_codes_for_usage_and_help() {
    let env = Env::new();
    env.cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("process-query"));
    env.cmd().arg("no-such-command").assert().code(2);
    env.cmd().args(["query", "sql"]).assert().code(2);
    env.cmd()
        .args(["query", "sql", "SELECT 1", "--format", "xml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value 'xml'"));
}

#[test]
fn schema_migrations_are_recorded_once() {
    let env = Env::new();
    env.json(&["status"]);
    env.json(&["status"]);
    let rows = env.json(&[
        "query",
        "sql",
        "SELECT version, name FROM schema_migrations ORDER BY version",
    ]);
    let mut files: Vec<String> = std::fs::read_dir(crate::support::repo_root().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let recorded: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{:04}_{}.sql",
                r["version"].as_u64().unwrap(),
                r["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(recorded, files);
}
