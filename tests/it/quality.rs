//! CLI tests of label quality: `taxonomy init` from a repository's labels, `train` of the
//! `local` model, `--model local` in real time and batch mode, the no-key default, `evaluate`
//! (JSON, tables, HTML, the `evaluations` record) and no scoring on training issues.

use serde_json::{json, Value};

use crate::support::Env;

const TYPES: [(&str, &[&str]); 3] = [
    (
        "bug",
        &["crash", "exception", "broken", "regression", "segfault"],
    ),
    (
        "feature",
        &["support", "add", "proposal", "would", "enhancement"],
    ),
    (
        "question",
        &["how", "why", "documentation", "help", "understand"],
    ),
];
const NOISE: &[&str] = &[
    "the", "parser", "when", "using", "version", "config", "on", "linux",
];

/// 120 issues of three exclusive types, one a day from 2024-01-01, a few of them with a
/// label outside the taxonomy too.
fn issues() -> Value {
    let mut out = Vec::new();
    for n in 1..=120u64 {
        let (label, words) = TYPES[(n % 3) as usize];
        let w = |k: u64| words[((n / 3 + k) % words.len() as u64) as usize];
        let x = |k: u64| NOISE[((n * 7 + k) % NOISE.len() as u64) as usize];
        let mut labels = vec![json!({"name": label, "description": format!("A {label}")})];
        if n % 10 == 0 {
            labels.push(json!({"name": "p1", "description": null}));
        }
        let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(n);
        out.push(json!({
            "url": format!("https://api.github.com/repos/o/r/issues/{n}"),
            "repository_url": "https://api.github.com/repos/o/r",
            "number": n,
            "title": format!("{} {} {}", x(1), w(0), x(2)),
            "body": format!("{} {} {} {} {}", x(3), w(1), x(4), w(2), x(5)),
            "state": "open",
            "labels": labels,
            "comments": 0,
            "created_at": format!("{day}T10:00:00Z"),
            "updated_at": format!("{day}T10:00:00Z"),
            "closed_at": null,
        }));
    }
    Value::Array(out)
}

/// The day splitting the issues: 90 before it, 30 from it on.
const SPLIT: &str = "2024-04-01";

fn setup() -> (Env, String) {
    let env = Env::new();
    let s = env.import_json(&issues());
    assert_eq!(s["issues"], 120);
    let toml = env.dir.path().join("types.toml").display().to_string();
    let init = ["taxonomy", "init", "--org", "o", "--repo", "r"];
    env.run(&[&init[..], &["--min-issues", "20", "-o", &toml]].concat())
        .ok();
    (env, toml)
}

/// `train product-labeling --taxonomy <toml>` and `extra`; its answer.
fn train(env: &Env, toml: &str, extra: &[&str]) -> Value {
    env.json(&[&["train", "product-labeling", "--taxonomy", toml], extra].concat())
}

#[test]
fn taxonomy_init_writes_used_labels_with_descriptions_and_detects_exclusivity() {
    let (env, toml) = setup();
    let text = std::fs::read_to_string(&toml).unwrap();
    // p1 is on 12 issues: below --min-issues 20.
    assert!(text.contains("name = \"bug\"") && text.contains("description = \"A bug\""));
    assert!(!text.contains("\"p1\""));
    assert!(text.lines().any(|l| l == "exclusive = true"), "{text}");
    assert!(text.contains("# used on 40 issue(s)"));
    // Never overwritten; a prefix filters; an empty result is a clear error.
    env.run(&["taxonomy", "init", "--org", "o", "-o", &toml])
        .fails_with("already exists");
    let out = env.run(&[
        "taxonomy",
        "init",
        "--org",
        "o",
        "--min-issues",
        "1",
        "--prefix",
        "p",
    ]);
    let printed = out.stdout;
    assert!(
        printed.contains("\"p1\"") && !printed.contains("\"bug\""),
        "{printed}"
    );
    assert!(
        printed.contains("exclusive = false"),
        "one label is not an exclusive set"
    );
    env.run(&["taxonomy", "init", "--org", "nobody"])
        .fails_with("error: no label");
}

#[test]
fn train_then_label_newer_issues_with_local_and_evaluate_them() {
    let (env, toml) = setup();
    let t = train(
        &env,
        &toml,
        &["--org", "o", "--repo", "r", "--until", SPLIT],
    );
    assert_eq!(t["training_issues"], 90);
    assert_eq!(t["exclusive"], true);
    let rows = env
        .rows("SELECT training_issues, json_array_length(training_ids) AS n FROM trained_models");
    assert_eq!(rows[0]["n"], 90);
    // Real time, the newer issues only.
    let sql = format!("SELECT id FROM issues WHERE created_at >= '{SPLIT}'");
    env.json(&[
        "process-query",
        "custom",
        "product-labeling",
        &sql,
        "--model",
        "local",
        "--taxonomy",
        &toml,
        "--yes",
    ]);
    let r = env.rows("SELECT model, provider, result FROM ai_results");
    assert_eq!(r.len(), 30);
    assert_eq!(r[0]["model"], "local");
    let result: Value = serde_json::from_str(r[0]["result"].as_str().unwrap()).unwrap();
    let rec = &result["analysis"]["recommended_labels"];
    assert_eq!(rec.as_array().unwrap().len(), 1, "exclusive: one label");
    assert!(
        rec[0]["reasoning"]
            .as_str()
            .unwrap()
            .contains("strongest terms"),
        "{rec}"
    );
    assert_eq!(result["processor"]["local_model"]["training_issues"], 90);

    let html = env.dir.path().join("report.html");
    let e = env.json(&[
        "evaluate",
        "product-labeling",
        "--taxonomy",
        &toml,
        "--model",
        "local",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(e["metrics"]["issues"], 30);
    assert_eq!(e["excluded_training_issues"], 0);
    let macro_f1 = e["metrics"]["macro_f1"].as_f64().unwrap();
    assert!(macro_f1 >= 0.9, "macro-F1 {macro_f1}");
    assert_eq!(e["metrics"]["coverage"], 1.0);
    assert!(e["metrics"]["confusion"]["cells"].is_array());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"reliability\"") && page.contains("id=\"confusion\""));
    let stored = env.rows("SELECT model, issue_count, macro_f1, taxonomy_name FROM evaluations");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["issue_count"], 30);
    assert_eq!(stored[0]["model"], "local");

    // Table output names the figures too.
    let out = env.run(&["evaluate", "product-labeling", "--taxonomy", &toml]);
    let text = out.ok().stdout;
    assert!(
        text.contains("macro_f1") && text.contains("Confusion matrix"),
        "{text}"
    );
}

#[test]
fn evaluate_never_scores_the_local_model_on_its_training_issues() {
    let (env, toml) = setup();
    train(&env, &toml, &["--until", SPLIT]);
    // Batch mode, local executor, every issue (training ones included).
    env.json(&[
        "process-query",
        "missing",
        "product-labeling",
        "--state",
        "all",
        "--batch-mode",
        "--wait",
        "--poll-interval",
        "0.1",
        "--model",
        "local",
        "--taxonomy",
        &toml,
        "--yes",
    ]);
    assert_eq!(
        env.scalar("SELECT count(*) FROM ai_results WHERE mode = 'batch'"),
        120
    );
    let e = env.json(&["evaluate", "product-labeling", "--taxonomy", &toml]);
    assert_eq!(e["excluded_training_issues"], 90);
    assert_eq!(e["metrics"]["issues"], 30);
}

#[test]
fn without_a_key_the_trained_local_model_is_the_default_and_rules_otherwise() {
    let (env, toml) = setup();
    let one = "SELECT id FROM issues WHERE number = 120";
    let query = ["process-query", "custom", "product-labeling", one, "--yes"];
    let run = |taxonomy: &str, args: &[&str]| {
        env.run(&[&query[..], &["--taxonomy", taxonomy], args].concat())
    };
    let before = run(&toml, &[]).ok();
    assert!(before.stderr.contains("offline `rules` model"));
    assert_eq!(env.scalar("SELECT model FROM ai_results"), "rules");
    // --model local without a trained model says what to do.
    run(&toml, &["--model", "local"]).fails_with("no trained local model");

    train(&env, &toml, &[]);
    let after = run(&toml, &[]).ok();
    after.says("trained `local` model");
    assert_eq!(env.scalar("SELECT model FROM ai_results"), "local");
    // Another taxonomy (another hash) has no trained model: rules again.
    let text = std::fs::read_to_string(&toml).unwrap();
    let other = env.write_file(
        "other.toml",
        text.replace("version = \"1\"", "version = \"2\""),
    );
    let again = run(other.to_str().unwrap(), &[]).ok();
    assert!(again.stderr.contains("offline `rules` model"));
    assert_eq!(env.scalar("SELECT model FROM ai_results"), "rules");
}

#[test]
fn quality_commands_refuse_bad_input_clearly() {
    let (env, toml) = setup();
    let train_args = ["train", "product-labeling", "--taxonomy", &toml];
    env.run(&[&train_args[..], &["--until", "yesterday"]].concat())
        .fails_with("--until \"yesterday\"");
    env.run(&["evaluate", "product-labeling", "--taxonomy", &toml])
        .fails_with("nothing to evaluate");
    env.run(&[&train_args[..], &["--until", "2024-01-05"]].concat())
        .fails_with("too few");
    // A damaged model file is an error, not a panic.
    train(&env, &toml, &[]);
    // Every model file: the folder holds more than one by now, and which one a directory
    // listing names first depends on the file system (tmpfs and ext4 differ).
    let models = env.data().join("models/product-labeling");
    for file in std::fs::read_dir(&models).unwrap() {
        std::fs::write(file.unwrap().path(), b"GAQLM1\nxx").unwrap();
    }
    let one = "SELECT id FROM issues LIMIT 1";
    let query = ["process-query", "custom", "product-labeling", one];
    env.run(
        &[
            &query[..],
            &["--model", "local", "--taxonomy", &toml, "--yes"],
        ]
        .concat(),
    )
    .fails_with("not a valid local model");
}

#[test]
fn the_demo_trains_labels_evaluates_and_prints_quality() {
    let env = Env::new();
    let out = env.cmd().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("== 6/6"), "{text}");
    assert!(
        text.contains("Quality on") && text.contains("macro-F1"),
        "{text}"
    );
    assert!(env.data().join("quality-report.html").is_file());
    assert_eq!(env.scalar("SELECT count(*) FROM evaluations"), 1);
    let excluded = env.scalar("SELECT count(*) FROM ai_results WHERE model = 'local'");
    assert!(excluded.as_i64().unwrap() > 50);
}

#[test]
fn examples_go_after_the_stable_prefix_are_recorded_and_estimated() {
    use crate::fakes::openai::{answer_with, FakeOpenAi, Reply};
    let (env, toml) = setup();
    train(&env, &toml, &["--until", SPLIT]);
    let fake = FakeOpenAi::with_script(std::sync::Arc::new(|_| {
        Reply::Answer(answer_with(&["bug"], 0.9))
    }));
    let sql = "SELECT id FROM issues WHERE number IN (117, 118, 119)";
    let args = [
        "process-query",
        "custom",
        "product-labeling",
        sql,
        "--model",
        "openai:gpt-4o-mini",
        "--taxonomy",
        &toml,
        "--yes",
    ];
    env.run_json(&fake.env(), &[&args[..], &["--examples", "3"]].concat())
        .ok();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    let system: Vec<&Value> = reqs.iter().map(|r| &r.body["messages"][0]).collect();
    assert!(
        system
            .iter()
            .all(|m| m["role"] == "system" && *m == system[0]),
        "one stable prefix"
    );
    for r in &reqs {
        let user = r.body["messages"][1]["content"].as_str().unwrap();
        assert!(user.starts_with("Labelled examples"), "{user}");
        let examples = user.find("Example 3 (labels: ").expect("three examples");
        let issue = user.find("Repository: o/r").unwrap();
        assert!(examples < issue, "examples come before the issue");
        // Similar issues share the issue's type: 117 % 3 = 0 → bug, 118 → feature, 119 → question.
        let n: usize = user[issue..].split("Issue #").nth(1).unwrap()[..3]
            .parse()
            .unwrap();
        let kind = TYPES[n % 3].0;
        let head = &user[..issue];
        let same = head.matches(&format!("(labels: {kind})")).count();
        assert!(same >= 2, "issue {n} ({kind}): {head}");
        assert!(!system[0]["content"].as_str().unwrap().contains("Example 1"));
    }
    let notes = env.rows("SELECT result FROM ai_results");
    let result: Value = serde_json::from_str(notes[0]["result"].as_str().unwrap()).unwrap();
    let note = result["usage"]["prompt_note"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(note.contains("few-shot examples: o/r#"), "{result}");
    // The estimate counts the examples' tokens.
    let est = |extra: &[&str]| {
        let v = env
            .run_json(
                &[],
                &[
                    &args[..3],
                    &[
                        "SELECT id FROM issues",
                        "--model",
                        "openai:gpt-4o-mini",
                        "--taxonomy",
                        &toml,
                        "--dry-run",
                    ],
                    extra,
                ]
                .concat(),
            )
            .ok()
            .json();
        v["est_prompt_tokens"]
            .as_u64()
            .or_else(|| v["est_cost_usd"].as_f64().map(|c| (c * 1e9) as u64))
            .unwrap()
    };
    assert!(est(&["--examples", "5"]) > est(&[]));
    // Offline models have no prompt for examples.
    let r = env.run_json(
        &[],
        &[
            &args[..4],
            &[
                "--model",
                "local",
                "--taxonomy",
                &toml,
                "--examples",
                "2",
                "--yes",
            ],
        ]
        .concat(),
    );
    r.fails_with("--examples");
}
