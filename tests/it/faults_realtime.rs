//! The real-time fault suite: 1,000 issues against the fake OpenAI with 20% of requests meeting
//! a seeded fault (429, 500, 503, a hang past the client's timeout, an answer that is not
//! JSON). Every issue ends stored or recorded as failed, none is lost, none is billed twice
//! (requests counted per issue on the fake), and the fake saw exactly the requests the run
//! reports.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::fakes::openai::{self as fo, FakeOpenAi};
use crate::support::{labeling_args, stored_issue, Env};

const ORG: &str = "faultorg";
const REPO: &str = "faults";
const N: u64 = 1_000;
const SEED: u64 = 20_261_202;
const RATE: f64 = 0.2;

fn id(n: u64) -> String {
    format!("{ORG}/{REPO}#{n}")
}

#[test]
fn a_thousand_issues_under_twenty_percent_faults_lose_none_and_bill_none_twice() {
    let env = Env::new();
    let issues: Vec<Value> = (1..=N)
        .map(|n| {
            stored_issue(
                ORG,
                REPO,
                n,
                &format!("kotsadm fails on upgrade {n}"),
                "The admin console shows an error after the upgrade.",
                &[],
                &[],
            )
        })
        .collect();
    assert_eq!(env.import_json(&json!(issues))["issues"], N);
    let fake = FakeOpenAi::with_script(fo::faults(SEED, RATE, Duration::from_millis(1_500)));
    let r = env.run_json(
        &fake.env(),
        &labeling_args(
            ORG,
            "openai:gpt-4o-mini",
            &["--concurrency", "16", "--request-timeout", "1"],
        ),
    );
    let s = r.json();
    let failed: BTreeSet<String> = s["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["issue"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        r.code,
        if failed.is_empty() { 0 } else { 1 },
        "{}",
        r.stderr
    );

    // Every issue is stored or recorded as failed, never both, never neither.
    let stored: BTreeSet<String> = env
        .rows("SELECT issue_id FROM ai_results")
        .iter()
        .map(|r| r["issue_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(s["processed"].as_u64(), Some(stored.len() as u64));
    assert_eq!(s["not_started"], 0);
    assert!(
        stored.is_disjoint(&failed),
        "{:?}",
        stored.intersection(&failed)
    );
    assert_eq!(stored.len() + failed.len(), N as usize, "lost issues");
    for n in 1..=N {
        let file = env.data().join(format!(
            "results/{ORG}_{REPO}_issue_{n}_product-labeling.json"
        ));
        let record = env.data().join(format!(
            "results/failures/{ORG}_{REPO}_issue_{n}_product-labeling.json"
        ));
        assert_eq!(
            (file.exists(), record.exists()),
            (stored.contains(&id(n)), failed.contains(&id(n))),
            "issue {n}: the files disagree with the outcome"
        );
    }

    // The fake saw exactly the requests the run reports (timed-out ones included).
    let log = fake.requests();
    assert_eq!(s["requests"].as_u64(), Some(log.len() as u64));
    // Faults really were injected, of every kind, at about the rate asked for.
    let mut kinds = [0usize; 5];
    let mut billed_total = 0;
    // The log grouped by issue once, in order (not one pass over it per issue).
    let mut by_issue: std::collections::HashMap<String, Vec<&fo::Recorded>> = Default::default();
    for r in &log {
        if let Some(issue) = fo::issue_of(&r.body) {
            by_issue.entry(issue).or_default().push(r);
        }
    }
    for n in 1..=N {
        let reqs = by_issue.get(&id(n)).cloned().unwrap_or_default();
        assert!(!reqs.is_empty(), "issue {n} was never sent");
        // An answer the client received is billed: a 200 that was not held past its timeout.
        let (mut answers, mut repairs) = (0, 0);
        for (k, req) in reqs.iter().enumerate() {
            let fault = fo::fault_of(SEED, RATE, &id(n), k + 1);
            if let Some(f) = fault {
                kinds[f] += 1;
            }
            let delivered = req.status == 200 && fault != Some(3);
            let repair = req.body["messages"].as_array().unwrap().len() > 2;
            match (delivered, repair) {
                (true, false) => answers += 1,
                (true, true) => repairs += 1,
                _ => {}
            }
        }
        billed_total += answers + repairs;
        assert!(
            answers <= 1 && repairs <= 1,
            "issue {n} billed twice: {answers} answers, {repairs} repairs"
        );
        if stored.contains(&id(n)) {
            assert_eq!(answers, 1, "issue {n} stored without a delivered answer");
        }
    }
    let injected: usize = kinds.iter().sum();
    let rate = injected as f64 / log.len() as f64;
    assert!(
        kinds.iter().all(|k| *k > 20) && (0.15..0.25).contains(&rate),
        "faults {kinds:?} over {} requests",
        log.len()
    );
    eprintln!(
        "fault suite: {N} issues, {} requests, faults {:?} (429, 500, 503, timeout, invalid) = {:.1}%, \
         {} stored, {} recorded failed, {billed_total} answers billed",
        log.len(),
        kinds,
        rate * 100.0,
        stored.len(),
        failed.len()
    );
}
