//! `update-labels` against the strict fake GitHub (fakes/github/labels.rs): the whole loop
//! collect → process → discover → approve → update-labels, the race with a person on GitHub,
//! the additive default, dry runs, idempotent re-runs, percent-encoded names, missing labels,
//! per-issue errors, secondary limits and pacing, and the comment that is never posted twice.

use std::time::Duration;

use serde_json::Value;

use crate::fakes::github::{FakeComment, FakeGitHub, FakeIssue, Fault, Logged};
use crate::support::{Env, Run};

/// Labels the issues of acme with the offline `rules` model.
pub const RULES: [&str; 6] = [
    "process",
    "product-labeling",
    "--org",
    "acme",
    "--model",
    "rules",
];

pub const KOTS_BODY: &str =
    "Running kubectl kots upgrade fails: kotsadm restarts and the admin console is gone.";
pub const TROUBLESHOOT_BODY: &str =
    "The support bundle hangs in collectors; kubectl support-bundle never finishes.";

/// acme/app on GitHub: #1 about KOTS (labelled bug), #2 about Troubleshoot but labelled kURL,
/// #3 about nothing in the taxonomy.
pub fn github() -> FakeGitHub {
    let gh = FakeGitHub::start();
    let mut i1 =
        FakeIssue::new(1, "kotsadm upgrade fails", "2024-05-02T00:00:00Z").labels(&["bug"]);
    i1.body = Some(KOTS_BODY.into());
    let mut i2 = FakeIssue::new(2, "Support bundle hangs", "2024-05-02T00:00:00Z")
        .labels(&["product::kurl"]);
    i2.body = Some(TROUBLESHOOT_BODY.into());
    let mut i3 = FakeIssue::new(3, "Question about pricing", "2024-05-02T00:00:00Z");
    i3.body = Some("How much does it cost?".into());
    gh.add_repo("acme", "app", vec![i1, i2, i3]);
    gh.define_labels(
        "acme",
        "app",
        &[
            ("product::kots", Some("KOTS")),
            ("product::troubleshoot", Some("Troubleshoot")),
        ],
    );
    gh
}

pub struct Loop {
    pub env: Env,
    pub gh: FakeGitHub,
    pub vars: Vec<(&'static str, String)>,
}

impl Loop {
    /// A new data dir for `gh`, nothing collected yet; writes are not paced (tests of pacing
    /// set it themselves).
    pub fn bare(gh: FakeGitHub) -> Self {
        let mut vars = gh.env();
        vars.push(("GITHUB_ANALYSIS_WRITE_PACE", "0".into()));
        Self {
            env: Env::new(),
            gh,
            vars,
        }
    }

    /// Collected and processed with the offline rules model: recommendations are pending.
    pub fn new(gh: FakeGitHub) -> Self {
        let l = Self::bare(gh);
        l.run(&[
            "collect", "--org", "acme", "--repo", "app", "--state", "all",
        ])
        .ok();
        l.label_with_rules(&["--repo", "app"]);
        l
    }

    /// [`RULES`] and `extra`, which must succeed.
    pub fn label_with_rules(&self, extra: &[&str]) -> Run {
        self.run(&[&RULES[..], extra].concat()).ok()
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.env.run_json(&self.vars, args)
    }

    pub fn run_with(&self, extra: &[(&'static str, String)], args: &[&str]) -> Run {
        let mut vars = self.vars.clone();
        vars.extend(extra.iter().cloned());
        self.env.run_json(&vars, args)
    }

    pub fn recs(&self) -> Vec<Value> {
        self.run(&["recommendations", "list"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn status_of(&self, issue: &str) -> String {
        self.recs()
            .iter()
            .find(|r| r["issue"] == issue)
            .map(|r| r["status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    }

    pub fn update(&self, extra: &[&str]) -> Run {
        let mut args = vec!["update-labels", "--org", "acme", "--repo", "app", "--yes"];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

fn writes(gh: &FakeGitHub) -> Vec<Logged> {
    gh.writes()
}

fn targets(log: &[Logged]) -> Vec<String> {
    log.iter()
        .map(|l| format!("{} {}", l.method, l.target))
        .collect()
}

#[test]
fn the_whole_loop_from_collect_to_github_and_back_into_query() {
    let l = Loop::new(github());
    // `process` derived the recommendations itself.
    assert_eq!(l.status_of("acme/app#1"), "pending");
    assert_eq!(l.status_of("acme/app#2"), "pending");
    assert_eq!(l.status_of("acme/app#3"), "no_change");
    // Pending ones are never applied.
    l.gh.clear_log();
    let r = l.update(&[]).ok().json();
    assert_eq!(r["issues"], 0);
    assert_eq!(l.gh.request_count(), 0);

    l.run(&["recommendations", "approve", "acme/app#1", "acme/app#2"])
        .ok();
    // A dry run records the plan and sends nothing at all, not even a read.
    let dry = l.update(&["--dry-run"]).ok().json();
    assert_eq!(
        (dry["dry_run"].clone(), dry["planned"].clone()),
        (Value::Bool(true), 2.into())
    );
    assert_eq!(l.gh.request_count(), 0, "{:?}", targets(&l.gh.requests()));
    let planned = l
        .env
        .scalar("SELECT count(*) FROM label_changes WHERE dry_run");
    assert_eq!(planned, 2);

    let r = l.update(&[]).ok().json();
    assert_eq!(r["applied"], 2, "{r}");
    assert_eq!(r["labels_added"], 2);
    assert_eq!(r["removals_held_back"], 1, "additive by default");
    let w = writes(&l.gh);
    // One POST per changed issue, never a PUT or a DELETE.
    assert_eq!(
        targets(&w),
        vec![
            "POST /repos/acme/app/issues/1/labels",
            "POST /repos/acme/app/issues/2/labels"
        ]
    );
    assert_eq!(
        l.gh.issue_labels("acme", "app", 1),
        vec!["bug", "product::kots"]
    );
    assert_eq!(
        l.gh.issue_labels("acme", "app", 2),
        vec!["product::kurl", "product::troubleshoot"]
    );
    // Reads: each issue once, each label to add looked up once.
    assert_eq!(r["read_requests"], 4, "{r}");
    assert_eq!(r["write_requests"], 2);
    // The local copy follows: DuckDB (what `query` shows) and the issue file.
    let labels = l.env.scalar(
        "SELECT string_agg(name, ',' ORDER BY name) FROM labels WHERE issue_id = 'acme/app#1'",
    );
    assert_eq!(labels, "bug,product::kots");
    let file = std::fs::read_to_string(l.env.data().join("issues/acme_app_issue_1.json")).unwrap();
    assert!(file.contains("product::kots"));
    let rows = l.env.rows(
        "SELECT label, action, http_status, labels_before::VARCHAR AS b, labels_after::VARCHAR AS a
         FROM label_changes WHERE NOT dry_run AND issue_id = 'acme/app#1'",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["action"], "add");
    assert_eq!(rows[0]["http_status"], 200);
    assert_eq!(rows[0]["b"], "[\"bug\"]");
    assert_eq!(rows[0]["a"], "[\"bug\",\"product::kots\"]");
    assert_eq!(l.status_of("acme/app#1"), "applied");
    // #2 still has a removal to do: it stays approved.
    assert_eq!(l.status_of("acme/app#2"), "approved");

    // Idempotent: the second run sends no write.
    l.gh.clear_log();
    let again = l.update(&[]).ok().json();
    assert_eq!(again["write_requests"], 0, "{again}");
    assert!(writes(&l.gh).is_empty());

    // With --remove-labels the judged-wrong label goes, by one DELETE.
    l.gh.clear_log();
    let r = l.update(&["--remove-labels"]).ok().json();
    assert_eq!(r["labels_removed"], 1, "{r}");
    assert_eq!(
        targets(&writes(&l.gh)),
        vec!["DELETE /repos/acme/app/issues/2/labels/product::kurl"]
    );
    assert_eq!(
        l.gh.issue_labels("acme", "app", 2),
        vec!["product::troubleshoot"]
    );
    assert_eq!(l.status_of("acme/app#2"), "applied");
    l.gh.clear_log();
    let r = l.update(&["--remove-labels"]).ok().json();
    assert_eq!(
        (r["issues"].clone(), r["write_requests"].clone()),
        (0.into(), Value::Null)
    );
    assert!(writes(&l.gh).is_empty());
    // Applied recommendations stay applied when discover runs again.
    l.run(&["recommendations", "discover"]).ok();
    assert_eq!(l.status_of("acme/app#1"), "applied");
}

#[test]
fn what_a_person_changed_on_github_since_discover_wins() {
    let l = Loop::new(github());
    l.run(&["recommendations", "approve", "acme/app#1", "acme/app#2"])
        .ok();
    // Between discover and apply a person removes `bug` from #1 and `product::kurl` from #2.
    l.gh.update_issue("acme", "app", 1, |i| i.labels.clear());
    l.gh.update_issue("acme", "app", 2, |i| i.labels.clear());
    l.gh.clear_log();
    let r = l.update(&["--remove-labels"]).ok().json();
    assert_eq!(r["changed_on_github"], 2, "{r}");
    // `bug` is not re-added (the set is never replaced) and kurl is not deleted again.
    assert_eq!(l.gh.issue_labels("acme", "app", 1), vec!["product::kots"]);
    assert_eq!(
        l.gh.issue_labels("acme", "app", 2),
        vec!["product::troubleshoot"]
    );
    assert!(targets(&writes(&l.gh))
        .iter()
        .all(|t| t.starts_with("POST")));
    let results = r["results"].as_array().unwrap();
    assert!(results.iter().all(|x| x["changed_on_github"] == true));
    assert_eq!(l.status_of("acme/app#2"), "applied");
}

/// A taxonomy whose label names need percent-encoding in a URL path.
const ODD_TAXONOMY: &str = r#"
name = "odd"
version = "1"
[[labels]]
name = "area: kots ui"
description = "The admin console"
signals = [{ pattern = 'kotsadm', weight = 5.0 }]
[[labels]]
name = "100% broken 🐛"
description = "Nothing works"
signals = [{ pattern = 'restarts', weight = 5.0 }]
[[labels]]
name = "needs triage?"
description = "Nobody looked yet"
signals = [{ pattern = 'zzz-never', weight = 5.0 }]
"#;

#[test]
fn label_names_are_percent_encoded_and_missing_labels_fail_or_are_created() {
    let gh = FakeGitHub::start();
    let mut i1 =
        FakeIssue::new(1, "kotsadm upgrade", "2024-05-02T00:00:00Z").labels(&["needs triage?"]);
    i1.body = Some(KOTS_BODY.into());
    gh.add_repo("acme", "app", vec![i1]);
    // "100% broken 🐛" does not exist in the repository yet.
    gh.define_labels("acme", "app", &[("area: kots ui", Some("UI"))]);
    let l = Loop::bare(gh);
    let tax = l.env.write_file("odd.toml", ODD_TAXONOMY);
    let tax = tax.to_str().unwrap().to_string();
    l.run(&["collect", "--org", "acme", "--repo", "app"]).ok();
    l.label_with_rules(&["--taxonomy", &tax]);
    // The hook used the run's taxonomy: the wrong `needs triage?` is proposed for removal.
    l.run(&[
        "recommendations",
        "discover",
        "--taxonomy",
        &tax,
        "--force-refresh",
    ])
    .ok();
    let rec = &l.recs()[0];
    assert_eq!(rec["remove"], serde_json::json!(["needs triage?"]), "{rec}");
    l.run(&["recommendations", "approve", "acme/app#1"]).ok();

    l.update(&["--remove-labels", "--taxonomy", &tax])
        .fails_with("\"100% broken 🐛\" does not exist in acme/app")
        .says("--create-missing-labels");
    // Nothing on that issue changed, and GitHub was not left to create the label silently.
    assert!(writes(&l.gh).is_empty(), "{:?}", targets(&writes(&l.gh)));
    assert!(!l
        .gh
        .repo_labels("acme", "app")
        .iter()
        .any(|x| x.name.starts_with("100%")));
    assert!(l
        .gh
        .requests()
        .iter()
        .any(|x| x.target == "/repos/acme/app/labels/100%25%20broken%20%F0%9F%90%9B"));
    assert_eq!(l.status_of("acme/app#1"), "approved");

    l.gh.clear_log();
    let r = l
        .update(&[
            "--remove-labels",
            "--create-missing-labels",
            "--taxonomy",
            &tax,
        ])
        .ok()
        .json();
    assert_eq!(
        (r["applied"].clone(), r["labels_created"].clone()),
        (1.into(), 1.into()),
        "{r}"
    );
    let created =
        l.gh.repo_labels("acme", "app")
            .into_iter()
            .find(|x| x.name == "100% broken 🐛")
            .unwrap();
    assert_eq!(created.description.as_deref(), Some("Nothing works"));
    assert_eq!(
        targets(&writes(&l.gh)),
        vec![
            "POST /repos/acme/app/labels",
            "POST /repos/acme/app/issues/1/labels",
            "DELETE /repos/acme/app/issues/1/labels/needs%20triage%3F",
        ]
    );
    let mut now = l.gh.issue_labels("acme", "app", 1);
    now.sort();
    assert_eq!(now, vec!["100% broken 🐛", "area: kots ui"]);
}

#[test]
fn refusals_deleted_and_invalid_issues_fail_alone_and_stay_unapplied() {
    let gh = github();
    // #4: already at GitHub's 100 labels: adding one more is a 422.
    let many: Vec<String> = (0..100).map(|i| format!("x{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let mut i4 = FakeIssue::new(4, "kotsadm crash", "2024-05-02T00:00:00Z").labels(&many);
    i4.body = Some(KOTS_BODY.into());
    gh.update_issue("acme", "app", 3, |_| {});
    let l = {
        gh.add_repo("acme", "other", vec![i4]);
        gh.define_labels("acme", "other", &[("product::kots", None)]);
        let l = Loop::bare(gh);
        for repo in ["app", "other"] {
            l.run(&["collect", "--org", "acme", "--repo", repo, "--state", "all"])
                .ok();
        }
        l.label_with_rules(&[]);
        l
    };
    l.run(&["recommendations", "approve", "--all"]).ok();
    // #1 deleted on GitHub since collect.
    l.gh.update_issue("acme", "app", 1, |i| i.deleted = true);
    let r = l.run(&["update-labels", "--org", "acme", "--yes"]);
    r.fails_with("acme/app#1: the issue was deleted on GitHub (410 Gone)");
    r.says("acme/other#4: GitHub refused to add labels (422");
    let j = r.json();
    assert_eq!(
        (j["applied"].clone(), j["failed"].clone()),
        (1.into(), 2.into()),
        "{j}"
    );
    assert_eq!(l.status_of("acme/app#1"), "approved");
    assert_eq!(l.status_of("acme/app#2"), "approved", "held-back removal");
    assert_eq!(l.gh.issue_labels("acme", "app", 2).len(), 2);

    // A token without write access: one clear error per issue, and after the first refusal
    // no further write goes to that repository.
    let gh = github();
    gh.deny_writes();
    let l = Loop::new(gh);
    l.run(&["recommendations", "approve", "--all"]).ok();
    l.gh.clear_log();
    let r = l.update(&[]);
    r.fails_with("acme/app#1: GitHub refused to add labels (403 Resource not accessible by personal access token)")
        .says("write access to issues")
        .says("acme/app#2: not sent: GitHub refused");
    assert_eq!(writes(&l.gh).len(), 1, "{:?}", targets(&l.gh.requests()));
    assert_eq!(l.status_of("acme/app#1"), "approved");
    assert!(l.gh.issue_labels("acme", "app", 1) == vec!["bug"]);
}

#[test]
fn secondary_limits_are_waited_out_and_writes_are_paced() {
    // A secondary limit with retry-after: 1 — the fake refuses writes until the second has
    // passed, so a client that retries without waiting runs out of attempts.
    let l = Loop::new(github());
    l.run(&["recommendations", "approve", "--all"]).ok();
    l.gh.push_write_fault(Fault::SecondaryRateLimit {
        status: 403,
        retry_after: Some(1),
    });
    l.gh.clear_log();
    let r = l.run_with(
        &[("GITHUB_ANALYSIS_MAX_WAIT", "2".into())],
        &["update-labels", "--org", "acme", "--repo", "app", "--yes"],
    );
    let j = r.ok().json();
    assert_eq!(j["applied"], 2, "{j}");
    let w = writes(&l.gh);
    assert_eq!(
        w.iter().filter(|x| x.status == 403).count(),
        1,
        "{:?}",
        targets(&w)
    );

    // Pacing: a fake that refuses writes closer than 200 ms. Unpaced, the client hits
    // secondary limits; paced at a fifth of GitHub's limits (a write every 200+ ms), never.
    let fresh = || {
        let l = Loop::new(github());
        l.run(&["recommendations", "approve", "--all"]).ok();
        l.gh.set_min_write_gap(Duration::from_millis(200));
        l.gh.clear_log();
        l
    };
    let l = fresh();
    l.update(&["--remove-labels"]).ok();
    let refused = writes(&l.gh).iter().filter(|x| x.status == 403).count();
    assert!(refused > 0, "an unpaced run should hit the fake's limit");
    let l = fresh();
    let j = l
        .run_with(
            &[("GITHUB_ANALYSIS_WRITE_PACE", "0.25".into())],
            &[
                "update-labels",
                "--org",
                "acme",
                "--repo",
                "app",
                "--yes",
                "--remove-labels",
            ],
        )
        .ok()
        .json();
    let w = writes(&l.gh);
    assert_eq!(w.len(), 3, "{:?}", targets(&w));
    assert!(w.iter().all(|x| x.status == 200), "{:?}", targets(&w));
    assert!(j["pacing_wait_s"].as_f64().unwrap() > 0.0, "{j}");
}

#[test]
fn the_comment_is_posted_once_per_recommendation() {
    let l = Loop::new(github());
    l.run(&["recommendations", "approve", "acme/app#1", "acme/app#2"])
        .ok();
    // #2's comment was posted by an earlier run whose record was lost: its marker is there.
    let md5 = l
        .env
        .scalar("SELECT result_md5 FROM recommendations WHERE issue_id = 'acme/app#2'");
    let marker = format!(
        "<!-- github-analysis:labels result={} -->",
        md5.as_str().unwrap()
    );
    l.gh.update_issue("acme", "app", 2, |i| {
        i.comments.push(FakeComment {
            id: 77,
            author: Some("triage-bot".into()),
            body: format!("{marker}\nearlier"),
            created_at: FakeGitHub::now(),
            updated_at: FakeGitHub::now(),
        })
    });
    l.gh.clear_log();
    let r = l.update(&["--comment"]).ok().json();
    assert_eq!(r["comments"], 1, "{r}");
    let posted = l.gh.comment_bodies("acme", "app", 1);
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0].starts_with("<!-- github-analysis:labels result="),
        "{}",
        posted[0]
    );
    assert!(
        posted[0].contains("`product::kots`") && posted[0].contains("confidence"),
        "{}",
        posted[0]
    );
    assert_eq!(l.gh.comment_bodies("acme", "app", 2).len(), 1);
    // #2 stays approved (removal held back); a run with --remove-labels applies it and does
    // not comment again on the same recommendation.
    l.gh.clear_log();
    l.update(&["--comment", "--remove-labels"]).ok();
    assert_eq!(l.gh.comment_bodies("acme", "app", 2).len(), 1);
    assert_eq!(l.gh.comment_bodies("acme", "app", 1).len(), 1);
}

#[test]
fn a_comment_whose_answer_was_lost_is_not_posted_twice() {
    let l = Loop::new(github());
    l.run(&["recommendations", "approve", "acme/app#1"]).ok();
    // Labels go on normally; the comment is created but its answer is a 502.
    l.gh.push_write_fault(Fault::Pass);
    l.gh.push_write_fault(Fault::ServerErrorAfterWriting { status: 502 });
    let r = l.update(&["--comment"]).ok().json();
    assert_eq!(
        r["comments"], 0,
        "found on the issue, not posted again: {r}"
    );
    assert_eq!(l.gh.comment_bodies("acme", "app", 1).len(), 1);
    let posts =
        l.gh.writes()
            .iter()
            .filter(|w| w.method == "POST" && w.target.ends_with("/comments"))
            .count();
    assert_eq!(posts, 1, "one comment POST, never repeated blindly");
}

#[test]
fn update_labels_asks_first_and_needs_a_rule_for_pending_ones() {
    let l = Loop::new(github());
    l.run(&["recommendations", "approve", "acme/app#1"]).ok();
    // No terminal and no --yes: refused with exit 2, nothing sent.
    l.gh.clear_log();
    let r = l.run(&["update-labels", "--org", "acme"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.says("pass --yes");
    assert_eq!(l.gh.request_count(), 0);
    // --ignore-status is an explicit rule: it needs a confidence.
    let r = l.run(&["update-labels", "--org", "acme", "--ignore-status", "--yes"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    l.update(&[]).ok();
    assert_eq!(l.status_of("acme/app#1"), "applied");
    // Pending #2 is applied by the rule only at or above the confidence asked for.
    let j = l
        .update(&["--ignore-status", "--min-confidence", "0.99"])
        .ok()
        .json();
    assert_eq!(j["issues"], 0, "{j}");
    let j = l
        .update(&["--ignore-status", "--min-confidence", "0.1"])
        .ok()
        .json();
    assert_eq!(j["applied"], 1, "{j}");
    assert_eq!(
        l.gh.issue_labels("acme", "app", 2),
        vec!["product::kurl", "product::troubleshoot"]
    );
    // No token: a clear error before anything is sent.
    let mut vars = l.vars.clone();
    vars.retain(|(k, _)| *k != "GITHUB_TOKEN");
    l.env
        .run_json(
            &vars,
            &[
                "update-labels",
                "--org",
                "acme",
                "--ignore-status",
                "--min-confidence",
                "0",
                "--remove-labels",
                "--yes",
            ],
        )
        .fails_with("no GitHub token");
}
