//! `collect` when GitHub does not simply answer: rate limits and server errors are waited out
//! and retried, timeouts shrink the page, GraphQL errors fail clearly, a run that gives up or is
//! interrupted keeps its finished work for the next, and moved issues and renamed repositories
//! are followed. Uses the acme/widgets fixture of `collect.rs`.

use std::io::Read;

use crate::collect::{collect_widgets, graphql_requests, run_widgets, setup, OLD};
use crate::fakes::github::{FakeIssue, Fault, Target, RATE_LIMIT_WAIT};
use serde_json::Value;

/// The rate-limit tests' wait cap: the fake refuses every request until each limit is over.
fn max_wait() -> Vec<(&'static str, String)> {
    vec![("GITHUB_ANALYSIS_MAX_WAIT", RATE_LIMIT_WAIT.to_string())]
}

#[test]
fn rest_rate_limits_and_server_errors_are_retried() {
    let (gh, env) = setup();
    gh.push_fault(Target::Rest, Fault::PrimaryRateLimit { status: 403 });
    gh.push_fault(
        Target::Rest,
        Fault::SecondaryRateLimit {
            status: 429,
            retry_after: None,
        },
    );
    gh.push_fault(
        Target::Rest,
        Fault::SecondaryRateLimit {
            status: 403,
            retry_after: Some(1),
        },
    );
    gh.push_fault(Target::Rest, Fault::ServerError { status: 500 });
    // The fake refuses every request until each limit is over: the client must really wait.
    run_widgets(&env, &gh, &max_wait(), &["--issue-number", "1"])
        .ok()
        .says("GitHub primary rate limit reached (core)")
        // No retry-after: at least a minute, capped in tests by GITHUB_ANALYSIS_MAX_WAIT.
        .says("secondary rate limit hit (core): waiting 60s (capped at 2.5s by GITHUB_ANALYSIS_MAX_WAIT)")
        .says("secondary rate limit hit (core): waiting 1.0s")
        .says("GitHub answered 500 Internal Server Error; retrying");
    // 4 faulted attempts, then the issue and its one comment page.
    assert_eq!(gh.request_count(), 6);
    assert_eq!(env.scalar("SELECT count(*) FROM comments"), 2);
}

#[test]
fn graphql_rate_limits_with_http_200_and_timeouts_are_retried() {
    let (gh, env) = setup();
    gh.push_fault(
        Target::GraphQl,
        Fault::GraphQlRateLimited {
            newer_variant: false,
        },
    );
    gh.push_fault(
        Target::GraphQl,
        Fault::GraphQlRateLimited {
            newer_variant: true,
        },
    );
    gh.push_fault(Target::GraphQl, Fault::ServerError { status: 502 });
    gh.push_fault(Target::GraphQl, Fault::ServerError { status: 500 });
    gh.push_fault(Target::GraphQl, Fault::PrimaryRateLimit { status: 429 });
    let r = run_widgets(&env, &gh, &max_wait(), &["--format", "json"]).ok();
    assert_eq!(
        r.stderr
            .matches("GraphQL rate limit reached (graphql)")
            .count(),
        2,
        "{}",
        r.stderr
    );
    r.says("GitHub answered 502 Bad Gateway; retrying")
        .says("GitHub answered 500 Internal Server Error; retrying")
        .says("primary rate limit reached (graphql)");
    assert_eq!(gh.request_count(), 5 + 3);
    assert_eq!(r.json()["issues"], 128);
}

#[test]
fn an_exhausted_bucket_is_waited_out_before_the_next_request() {
    let (gh, env) = setup();
    gh.push_fault(Target::GraphQl, Fault::Exhausted);
    run_widgets(&env, &gh, &max_wait(), &[])
        .ok()
        .says("GitHub rate limit exhausted (graphql): waiting");
    assert_eq!(gh.request_count(), 3);
}

#[test]
fn a_run_that_gives_up_keeps_finished_pages_and_the_next_run_completes() {
    let (gh, env) = setup();
    gh.push_fault(Target::GraphQl, Fault::Pass);
    gh.push_fault(Target::GraphQl, Fault::Pass);
    for _ in 0..6 {
        gh.push_fault(Target::GraphQl, Fault::ServerError { status: 500 });
    }
    run_widgets(&env, &gh, &[], &["--state", "all"])
        .fails_with("error: cannot collect acme/widgets")
        .says("after 6 attempts");
    // Page one (100 issues, #3's long thread included) was written and loaded.
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 100);
    assert_eq!(
        env.scalar("SELECT count(*) FROM comments WHERE issue_id = 'acme/widgets#3'"),
        150
    );
    // No cursor was recorded, so the next run fetches everything and only writes what is new.
    let s = collect_widgets(&env, &gh, &["--state", "all"]);
    assert_eq!(s["incremental"], 0);
    assert_eq!(s["new"], 29);
    assert_eq!(s["unchanged"], 100);
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 129);
}

/// Ctrl-C while a request hangs: what was fetched is kept (files and rows), the run says how to
/// resume, and the next run completes.
#[cfg(unix)]
#[test]
fn ctrl_c_keeps_finished_work_and_the_next_run_resumes() {
    let (gh, env) = setup();
    gh.push_fault(Target::GraphQl, Fault::Pass);
    gh.push_fault(Target::GraphQl, Fault::Pass);
    gh.push_fault(Target::GraphQl, Fault::Delay(60_000));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_github-analysis"))
        .args([
            "collect", "--org", "acme", "--repo", "widgets", "--state", "all",
        ])
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_ANALYSIS_DATA_DIR", env.data())
        .envs(gh.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (with a generous guard, not a timing assertion) until the third request hangs.
    let start = std::time::Instant::now();
    while gh.request_count() < 3 {
        assert!(
            start.elapsed().as_secs() < 120,
            "collect never reached its third request"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 100);
    let s = collect_widgets(&env, &gh, &["--state", "all"]);
    assert_eq!(s["new"], 29);
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 129);
}

#[test]
fn a_transferred_issue_is_followed_and_stored_where_it_lives_now() {
    let (gh, env) = setup();
    gh.add_repo(
        "acme",
        "gadgets",
        vec![FakeIssue::new(3, "Moved here", OLD).with_comments(1)],
    );
    gh.update_issue("acme", "widgets", 2, |i| {
        i.moved_to = Some(("gadgets".into(), 3))
    });
    run_widgets(&env, &gh, &[], &["--issue-number", "2"])
        .ok()
        .says("acme/widgets#2 now lives at acme/gadgets#3");
    let reqs = gh.requests();
    assert_eq!(reqs[0].status, 301);
    assert!(reqs[1].target.starts_with("/repositories/"), "{reqs:?}");
    assert!(env.data().join("issues/acme_gadgets_issue_3.json").exists());
    assert!(!env.data().join("issues/acme_widgets_issue_2.json").exists());
    assert_eq!(env.scalar("SELECT title FROM issues"), "Moved here");
    assert_eq!(env.scalar("SELECT count(*) FROM comments"), 1);
}

#[test]
fn graphql_timeouts_shrink_the_page_instead_of_repeating_it() {
    let (gh, env) = setup();
    gh.push_fault(Target::GraphQl, Fault::ServerError { status: 504 });
    gh.push_fault(Target::GraphQl, Fault::ServerError { status: 502 });
    run_widgets(&env, &gh, &[], &["--state", "all"])
        .ok()
        .says("acme/widgets: GitHub timed out on a page of 100 issues; asking for 50 at a time");
    let firsts: Vec<Value> = graphql_requests(&gh)
        .iter()
        .filter(|r| r.graphql == Some("issues"))
        .map(|r| r.variables.clone().unwrap()["first"].clone())
        .collect();
    assert_eq!(firsts, vec![100, 100, 50, 50, 50]);
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 129);
    assert_eq!(
        env.scalar("SELECT count(*) FROM comments WHERE issue_id = 'acme/widgets#3'"),
        150
    );
}

#[test]
fn a_renamed_repository_is_collected_under_its_new_name() {
    let (gh, env) = setup();
    gh.rename("acme", "widgets", "gizmos");
    run_widgets(&env, &gh, &[], &["--state", "all"])
        .ok()
        .says("acme/widgets was renamed to acme/gizmos: collecting it under the new name");
    assert_eq!(
        env.scalar("SELECT count(*) FROM issues WHERE repo = 'gizmos'"),
        129
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM issues WHERE repo = 'widgets'"),
        0
    );
    // One page under the old name is discarded.
    assert_eq!(gh.request_count(), 4);
    // REST paths with the old name follow the 301.
    gh.clear_log();
    collect_widgets(&env, &gh, &["--issue-number", "1"]);
    let reqs = gh.requests();
    assert_eq!(reqs[0].status, 301);
    assert!(
        reqs[1].target.starts_with("/repositories/1000/issues/1"),
        "{reqs:?}"
    );
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 129);
}

#[test]
fn graphql_errors_with_http_200_fail_clearly_even_with_partial_data() {
    let (gh, env) = setup();
    gh.push_fault(
        Target::GraphQl,
        Fault::GraphQlError {
            kind: "FORBIDDEN",
            message: "Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization.",
            with_data: false,
        },
    );
    run_widgets(&env, &gh, &[], &[]).fails_with("error: GitHub refused the query for acme/widgets: Resource protected by organization SAML enforcement");
    // A page cut short (data and errors together) is not stored as if it were complete.
    gh.push_fault(
        Target::GraphQl,
        Fault::GraphQlError {
            kind: "SERVICE_UNAVAILABLE",
            message: "Something went wrong while executing your query.",
            with_data: true,
        },
    );
    run_widgets(&env, &gh, &[], &[]).fails_with("Something went wrong while executing your query");
    assert_eq!(env.scalar("SELECT count(*) FROM issues"), 0);
}
