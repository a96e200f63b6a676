//! The GitHub fake is as strict as GitHub where `collect` depends on it, and `collect` holds up:
//! GitHub's clock (not ours) sets the incremental cursor and the rate-limit waits; requests
//! before a limit is over are refused; GraphQL answers only what was selected, in the order
//! asked; the token never goes to a third-party attachment host; two repositories whose file
//! names collide never overwrite each other's issues.

use crate::fakes::github::{FakeGitHub, FakeIssue, Fault, Target, RATE_LIMIT_WAIT};
use crate::support::{read_json, Env};
use serde_json::{json, Value};

fn collect(env: &Env, gh: &FakeGitHub, args: &[&str]) -> (Value, String) {
    let out = env
        .cmd_with(&gh.env())
        .env("GITHUB_ANALYSIS_MAX_WAIT", RATE_LIMIT_WAIT)
        .arg("collect")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "collect {args:?} failed: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn issues(n: u64) -> Vec<FakeIssue> {
    (1..=n)
        .map(|k| {
            FakeIssue::new(
                k,
                &format!("Issue {k}"),
                &format!("2024-03-{:02}T00:00:00Z", k),
            )
        })
        .collect()
}

fn graphql(gh: &FakeGitHub, query: &str) -> Value {
    let body = json!({"query": query, "variables": {"owner": "acme", "name": "app"}}).to_string();
    let resp = gh.raw_authorized("POST", "/graphql", &body);
    let json = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(json).unwrap()
}

#[test]
fn githubs_clock_an_hour_off_sets_the_cursor_and_the_waits() {
    let gh = FakeGitHub::start();
    gh.add_repo("acme", "app", issues(5));
    gh.set_clock_offset(-3600);
    // The first answer says the bucket is empty until GitHub's next second.
    gh.push_fault(Target::GraphQl, Fault::Exhausted);
    let env = Env::new();
    let (s, stderr) = collect(&env, &gh, &["--org", "acme", "--repo", "app"]);
    assert_eq!(s["issues"], 5);
    // The first answer emptied the bucket until its reset, 0.5–1.5 s ahead on the fake. A new
    // process cannot know that (GitHub would refuse it too), so the second run starts after it,
    // as a later run would; otherwise the refusal below is the race, not the client.
    std::thread::sleep(std::time::Duration::from_millis(1_600));
    gh.push_fault(Target::GraphQl, Fault::Exhausted);
    collect(&env, &gh, &["--org", "acme", "--repo", "app"]);
    let reqs = gh.requests();
    // Waited out on GitHub's clock: no request was refused.
    assert!(reqs.iter().all(|r| r.status == 200), "{reqs:?}\n{stderr}");
    assert_eq!(reqs.len(), 2);
    // The second run asks for changes since GitHub's time of the first run's answer, an hour
    // behind this machine's clock.
    let since = reqs[1].variables.as_ref().unwrap()["filter"]["since"]
        .as_str()
        .unwrap()
        .to_string();
    let since = chrono::DateTime::parse_from_rfc3339(&since)
        .unwrap()
        .to_utc();
    let first_answer = reqs[0].at;
    assert!(
        (since - first_answer).num_seconds().abs() <= 2,
        "cursor {since} is not GitHub's time of the first answer {first_answer}"
    );
    assert!((chrono::Utc::now() - since).num_seconds() >= 3500);
}

#[test]
fn requests_before_a_limit_is_over_are_refused() {
    let gh = FakeGitHub::start();
    gh.add_repo("acme", "app", issues(2));
    gh.push_fault(Target::Rest, Fault::PrimaryRateLimit { status: 403 });
    let first = gh.raw_authorized("GET", "/repos/acme/app/issues/1", "");
    let again = gh.raw_authorized("GET", "/repos/acme/app/issues/1", "");
    assert!(first.starts_with("HTTP/1.1 403"), "{first}");
    assert!(
        again.starts_with("HTTP/1.1 403"),
        "refused until the reset: {again}"
    );
    assert!(again
        .to_ascii_lowercase()
        .contains("x-ratelimit-remaining: 0"));
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    assert!(gh
        .raw_authorized("GET", "/repos/acme/app/issues/1", "")
        .starts_with("HTTP/1.1 200"));
    // A secondary limit with retry-after holds for that long.
    gh.push_fault(
        Target::Rest,
        Fault::SecondaryRateLimit {
            status: 429,
            retry_after: Some(2),
        },
    );
    assert!(gh
        .raw_authorized("GET", "/repos/acme/app/issues/1", "")
        .starts_with("HTTP/1.1 429"));
    let again = gh.raw_authorized("GET", "/repos/acme/app/issues/2", "");
    assert!(again.starts_with("HTTP/1.1 429"), "{again}");
    assert!(
        again.to_ascii_lowercase().contains("retry-after:"),
        "{again}"
    );
    // A bucket used up answers 403 until its reset.
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    gh.set_limits(1, 5000);
    let spent = gh.raw_authorized("GET", "/repos/acme/app/issues/2", "");
    assert!(spent.starts_with("HTTP/1.1 403"), "{spent}");
    assert!(spent.contains("API rate limit exceeded"), "{spent}");
}

#[test]
fn graphql_answers_only_the_selected_fields_in_the_order_asked() {
    let gh = FakeGitHub::start();
    let mut list = issues(4);
    list[1] = list[1].clone().closed();
    gh.add_repo("acme", "app", list);
    let q = |order: &str| {
        format!(
            "query {{ repository(owner: \"acme\", name: \"app\") {{ issues(first: 3{order}) {{ nodes {{ number }} }} }} }}"
        )
    };
    let numbers = |v: &Value| -> Vec<u64> {
        v["data"]["repository"]["issues"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|n| {
                assert_eq!(
                    n.as_object().unwrap().len(),
                    1,
                    "only `number` was selected: {n}"
                );
                n["number"].as_u64().unwrap()
            })
            .collect()
    };
    let desc = graphql(&gh, &q(", orderBy: {field: UPDATED_AT, direction: DESC}"));
    assert_eq!(numbers(&desc), vec![4, 3, 2]);
    let asc = graphql(&gh, &q(", orderBy: {field: UPDATED_AT, direction: ASC}"));
    assert_eq!(numbers(&asc), vec![1, 2, 3]);
    assert!(
        desc["data"].get("rateLimit").is_none(),
        "not selected: {desc}"
    );
    let unknown = graphql(
        &gh,
        "query { repository(owner: \"acme\", name: \"app\") { issues(first: 1) { nodes { number colour } } } }",
    );
    assert!(
        unknown["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Field 'colour' doesn't exist"),
        "{unknown}"
    );
    // What collect asks for is what it stores.
    let env = Env::new();
    collect(
        &env,
        &gh,
        &["--org", "acme", "--repo", "app", "--state", "all"],
    );
    let row = &env.rows(
        "SELECT closed_at IS NOT NULL AS closed_at, github_id, html_url, author FROM issues WHERE number = 2",
    )[0];
    assert_eq!(row["closed_at"], true, "{row}");
    assert_eq!(row["github_id"], 1_000_002);
    assert_eq!(row["author"], "octocat");
    assert!(row["html_url"]
        .as_str()
        .unwrap()
        .ends_with("/acme/app/issues/2"));
}

#[test]
fn the_token_never_goes_to_a_third_party_attachment_host() {
    let gh = FakeGitHub::start();
    // A second origin standing for the storage host GitHub redirects uploads to.
    let storage = FakeGitHub::start();
    storage.add_attachment("/user-attachments/assets/stored.png", b"PNG bytes".to_vec());
    let base = gh.url.clone();
    let mut issue = FakeIssue::new(1, "Screenshot", "2024-03-01T00:00:00Z");
    issue.body = Some(format!(
        "![shot]({base}/user-attachments/assets/shot.png) and {}/user-attachments/assets/stored.png",
        storage.url
    ));
    gh.add_repo("acme", "app", vec![issue]);
    gh.add_attachment_redirect(
        "/user-attachments/assets/shot.png",
        &format!(
            "{}/user-attachments/assets/stored.png?signature=abc",
            storage.url
        ),
    );
    let env = Env::new();
    let (s, _) = collect(
        &env,
        &gh,
        &["--org", "acme", "--repo", "app", "--download-attachments"],
    );
    assert_eq!(s["attachments_downloaded"], 1);
    let saved = env.scalar("SELECT file_path FROM attachments WHERE status = 'downloaded'");
    assert_eq!(
        std::fs::read(env.data().join(saved.as_str().unwrap())).unwrap(),
        b"PNG bytes"
    );
    // GitHub's own host got the token; the storage host was asked once (through the
    // redirect; the direct link to it is not a GitHub upload), without it.
    let to_github = gh.requests();
    let asked = to_github
        .iter()
        .find(|r| r.target.ends_with("shot.png"))
        .expect("the upload was requested from GitHub's host");
    assert!(asked.authorization, "{asked:?}");
    let to_storage = storage.requests();
    assert_eq!(to_storage.len(), 1, "{to_storage:?}");
    assert!(
        !to_storage[0].authorization,
        "the token was sent to the storage host: {to_storage:?}"
    );
}

#[test]
fn repositories_whose_file_names_collide_never_overwrite_each_other() {
    let gh = FakeGitHub::start();
    gh.add_repo("a_b", "c", issues(2));
    gh.add_repo("a", "b_c", issues(3));
    let env = Env::new();
    collect(&env, &gh, &["--org", "a_b", "--repo", "c"]);
    env.run_json(&gh.env(), &["collect", "--org", "a", "--repo", "b_c"])
        .fails_with(
            "a/b_c#1 was not stored: its file name issues/a_b_c_issue_1.json is already used by a_b/c#1",
        )
        .says("2 issues were not stored");
    assert_eq!(
        env.scalar("SELECT string_agg(id, ',' ORDER BY id) FROM issues"),
        "a/b_c#3,a_b/c#1,a_b/c#2"
    );
    let held: Value = read_json(env.data().join("issues/a_b_c_issue_1.json"));
    assert_eq!(held["org"], "a_b");
}

#[test]
fn an_organisation_is_collected_several_repositories_at_once_with_the_same_result() {
    let names = ["one", "two", "three", "four"];
    // One fake per run, so each run's requests in flight are counted alone.
    let acme = || {
        let gh = FakeGitHub::start();
        for name in names {
            gh.add_repo("acme", name, issues(3));
        }
        // GitHub's own response time, so requests in flight at once can be seen.
        gh.set_latency_ms(150);
        gh
    };
    let gh = acme();
    let sequential = Env::new();
    let (s, _) = collect(
        &sequential,
        &gh,
        &["--org", "acme", "--parallel-repos", "1"],
    );
    assert_eq!(s["issues"], 12);
    assert_eq!(gh.max_in_flight(), 1);
    let requests = gh.request_count();

    let gh2 = acme();
    let parallel = Env::new();
    let (s, stderr) = collect(&parallel, &gh2, &["--org", "acme", "--parallel-repos", "4"]);
    assert_eq!(
        (s["issues"].clone(), s["repositories"].clone()),
        (json!(12), json!(4))
    );
    assert!(
        gh2.max_in_flight() >= 2,
        "repositories were fetched one at a time"
    );
    assert_eq!(
        gh2.request_count(),
        requests,
        "parallelism costs no extra request"
    );
    for name in names {
        assert!(
            stderr.contains(&format!(
                "acme/{name}: 3 issues (3 new, 0 updated, 0 unchanged), 1 requests"
            )),
            "{stderr}"
        );
    }
    let ids = "SELECT string_agg(id, ',' ORDER BY id) FROM issues";
    assert_eq!(parallel.scalar(ids), sequential.scalar(ids));
    // Every repository's cursor moved: the next run is incremental everywhere.
    let (s, _) = collect(&parallel, &gh2, &["--org", "acme", "--parallel-repos", "4"]);
    assert_eq!(s["incremental"], 4);
}
