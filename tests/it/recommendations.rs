//! `recommendations …` on imported issues with the offline rules model: discover (by the
//! processing commands and on its own, idempotent, with history), list / summary / show in
//! every format, the scriptable decisions, review-session without a terminal and on a pseudo
//! terminal interrupted by Ctrl-C, and `reprocess --include-reviewed`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{stored_issue, Env};
use crate::update_labels::{KOTS_BODY, RULES, TROUBLESHOOT_BODY};

/// Three imported issues processed with `rules`: #1 and #2 get pending recommendations, #3
/// (nothing of the taxonomy) one with nothing to change.
fn setup() -> Env {
    let env = Env::new();
    env.import_json(&json!([
        stored_issue(
            "acme",
            "app",
            1,
            "kotsadm upgrade fails",
            KOTS_BODY,
            &["bug"],
            &[]
        ),
        stored_issue(
            "acme",
            "app",
            2,
            "Support bundle hangs",
            TROUBLESHOOT_BODY,
            &["product::kurl"],
            &[]
        ),
        stored_issue(
            "acme",
            "app",
            3,
            "Question about pricing",
            "How much?",
            &[],
            &[]
        ),
    ]));
    let out = env.run(&RULES).ok();
    // The processing command derived the recommendations itself.
    out.says("2 new recommendation(s) to review");
    env
}

fn status(env: &Env, issue: &str) -> Value {
    env.scalar(&format!(
        "SELECT status FROM recommendations WHERE issue_id = '{issue}' AND superseded_by IS NULL"
    ))
}

#[test]
fn discover_list_summary_show_and_scripted_decisions() {
    let env = setup();
    let again = env.json(&["recommendations", "discover"]);
    assert_eq!(
        again["created"], 0,
        "discover twice creates nothing: {again}"
    );

    let all = env.json(&["recommendations", "list"]);
    assert_eq!(all.as_array().unwrap().len(), 3);
    let two = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["issue"] == "acme/app#2")
        .unwrap();
    assert_eq!(two["add"], json!(["product::troubleshoot"]));
    assert_eq!(two["remove"], json!(["product::kurl"]));
    assert_eq!(two["status"], "pending");
    assert_eq!(
        env.json(&["recommendations", "list", "--status", "pending"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let kots = env.json(&["recommendations", "list", "--label", "product::kots"]);
    assert_eq!(kots.as_array().unwrap().len(), 1);
    let csv = env
        .cmd()
        .args(["recommendations", "list", "--format", "csv"])
        .output()
        .unwrap();
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(
        csv.starts_with("id,issue,processor,status,confidence,add,remove"),
        "{csv}"
    );
    assert!(csv.contains("product::troubleshoot,product::kurl"), "{csv}");

    let s = env.json(&["recommendations", "summary"]);
    let count = |key: &str, col: &str, v: &str| {
        s[key]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[col] == v)
            .map(|r| r["count"].clone())
    };
    assert_eq!(
        count("by_status", "status", "pending"),
        Some(2.into()),
        "{s}"
    );
    assert_eq!(
        count("by_status", "status", "no_change"),
        Some(1.into()),
        "{s}"
    );
    assert_eq!(
        count("by_label", "label", "product::kurl"),
        Some(1.into()),
        "{s}"
    );
    assert!(!s["by_confidence"].as_array().unwrap().is_empty());
    let table = env.run(&["recommendations", "summary"]);
    assert!(table.stdout.contains("By label"));

    let show = env.json(&["recommendations", "show", "acme/app#2"]);
    let cur = &show["current"][0];
    assert_eq!(cur["title"], "Support bundle hangs");
    assert_eq!(cur["labels_then"], json!(["product::kurl"]));
    assert_eq!(cur["labels_after"], json!(["product::troubleshoot"]));
    let reasons = cur["labels"].as_array().unwrap();
    assert!(reasons
        .iter()
        .any(|l| l["action"] == "add" && l["reasoning"].as_str().is_some_and(|r| !r.is_empty())));
    assert!(reasons
        .iter()
        .any(|l| l["action"] == "remove" && l["label"] == "product::kurl"));
    let table = env.run(&[
        "recommendations",
        "show",
        "2",
        "--org",
        "acme",
        "--repo",
        "app",
    ]);
    let text = table.stdout;
    assert!(
        text.contains("Support bundle hangs") && text.contains("reasoning"),
        "{text}"
    );

    // Scriptable decisions: every pending one for one label above a confidence.
    let approved = env.json(&[
        "recommendations",
        "approve",
        "--all",
        "--label",
        "product::kots",
        "--min-confidence",
        "0.5",
    ]);
    assert_eq!(approved.as_array().unwrap().len(), 1, "{approved}");
    assert_eq!(status(&env, "acme/app#1"), "approved");
    assert_eq!(status(&env, "acme/app#2"), "pending");
    env.json(&[
        "recommendations",
        "reject",
        "acme/app#2",
        "--note",
        "not now",
    ]);
    assert_eq!(status(&env, "acme/app#2"), "rejected");
    assert_eq!(
        env.scalar("SELECT reviewer_notes FROM recommendations WHERE issue_id = 'acme/app#2'"),
        "not now"
    );
    // Nothing to change cannot be approved; an unknown issue is named.
    let r = env.run_json(&[], &["recommendations", "approve", "acme/app#3"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("acme/app#3") && r.stderr.contains("no_change"),
        "{}",
        r.stderr
    );
    env.run_json(&[], &["recommendations", "show", "acme/app#9"])
        .fails_with("no recommendation for acme/app#9");
    let r = env.run_json(&[], &["recommendations", "list", "--status", "done"]);
    assert_eq!(r.code, 2);

    // A newer result makes a new pending recommendation; the approved one stays for audit.
    let one = [
        "--repo",
        "app",
        "--issue-number",
        "1",
        "--reprocess",
        "--include-reviewed",
    ];
    env.run(&[&RULES[..], &one].concat()).ok();
    assert_eq!(status(&env, "acme/app#1"), "pending");
    let history = env.json(&[
        "recommendations",
        "list",
        "--history",
        "--status",
        "approved",
    ]);
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    let show = env.json(&["recommendations", "show", "acme/app#1"]);
    assert_eq!(show["history"][0]["status"], "approved");
    assert_eq!(
        show["history"][0]["superseded_by"],
        show["current"][0]["id"]
    );
}

#[test]
fn review_session_refuses_without_a_terminal_and_points_to_the_scriptable_form() {
    let env = setup();
    let r = env.run_json(&[], &["recommendations", "review-session"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.says("recommendations approve|reject");
    assert_eq!(status(&env, "acme/app#1"), "pending");
}

#[test]
fn reprocess_leaves_reviewed_recommendations_alone_unless_asked() {
    let env = setup();
    env.json(&["recommendations", "approve", "acme/app#1"]);
    env.json(&["recommendations", "reject", "acme/app#2"]);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "process-query",
            "reprocess",
            "product-labeling",
            "--threshold",
            "1",
            "--model",
            "rules",
            "--yes",
        ];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    let r = run(&[]);
    assert_eq!(
        r["selected"], 1,
        "only #3, whose recommendation nobody reviewed: {r}"
    );
    assert_eq!(status(&env, "acme/app#1"), "approved");
    let r = run(&["--include-reviewed"]);
    assert_eq!(r["selected"], 3, "{r}");
    // The new results went back to review; the decisions are kept in the history.
    assert_eq!(status(&env, "acme/app#1"), "pending");
    assert_eq!(
        env.scalar("SELECT count(*) FROM recommendations WHERE status IN ('approved', 'rejected')"),
        2
    );
}

#[test]
fn process_reprocess_leaves_reviewed_recommendations_alone_unless_asked() {
    let env = setup();
    env.json(&["recommendations", "approve", "acme/app#1"]);
    let run = |extra: &[&str]| {
        env.run_json(&[], &[&RULES[..], &["--reprocess"], extra].concat())
            .ok()
    };
    let r = run(&[]);
    r.says("1 issue(s) with a reviewed recommendation kept");
    assert_eq!(r.json()["processed"], 2, "{}", r.stdout);
    assert_eq!(status(&env, "acme/app#1"), "approved");
    let r = run(&["--include-reviewed"]);
    assert_eq!(r.json()["processed"], 3, "{}", r.stdout);
    assert_eq!(status(&env, "acme/app#1"), "pending");
}

/// Output of a child on a pseudo terminal, read as it comes.
struct Pty {
    child: std::process::Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until the screen shows `needle` (after `from` bytes), or panics after 60 s.
    fn wait_for(&self, needle: &str, from: usize) -> usize {
        let start = Instant::now();
        loop {
            let t = self.text();
            if let Some(i) = t.get(from..).and_then(|s| s.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {needle:?} on screen:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, keys: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
}

#[test]
fn review_session_on_a_pseudo_terminal_keeps_decisions_made_before_ctrl_c() {
    // util-linux `script` gives the child a pseudo terminal; every CI machine of this project
    // has it (bsdutils). Elsewhere the test says so and stops, except in CI.
    if !std::path::Path::new("/usr/bin/script").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs /usr/bin/script for the pty test"
        );
        eprintln!("skipped: /usr/bin/script is not installed");
        return;
    }
    let env = setup();
    let bin = assert_cmd::cargo::cargo_bin("github-analysis");
    let mut child = Command::new("/usr/bin/script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "'{}' recommendations review-session",
            bin.display()
        ))
        .arg("/dev/null")
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_ANALYSIS_DATA_DIR", env.data())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script runs");
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut pty = Pty { child, out };
    // Item 1 of 2: approve (the default), with a note.
    let at = pty.wait_for("Recommendation 1/2", 0);
    let at = pty.wait_for("approve", at);
    pty.send("\r");
    let at = pty.wait_for("Note", at);
    pty.send("looks right\r");
    // Item 2 is on screen: the first decision is already saved. Ctrl-C now.
    pty.wait_for("Recommendation 2/2", at);
    pty.wait_for("acme/app#2", at);
    std::thread::sleep(Duration::from_millis(300));
    pty.send("\x03");
    let start = Instant::now();
    loop {
        if let Some(s) = pty.child.try_wait().unwrap() {
            assert!(
                !s.success(),
                "Ctrl-C ends the session with a failure status"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still running after Ctrl-C:\n{}",
            pty.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&env, "acme/app#1"), "approved", "{}", pty.text());
    assert_eq!(
        env.scalar("SELECT reviewer_notes FROM recommendations WHERE issue_id = 'acme/app#1'"),
        "looks right"
    );
    assert_eq!(status(&env, "acme/app#2"), "pending");
}
