//! Real-time processing: one request per issue, bounded concurrency, one repair retry for
//! invalid answers, every finished item stored at once (so an interrupt keeps it), failures
//! recorded and never fatal to the others, run-wide errors (bad key, no quota) stop new work.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::ai::http::{HttpClient, HttpFailure};
use crate::ai::pricing::PriceTable;
use crate::ai::{Answer, AnswerError, ModelSpec, Provider, ProviderKind, Repair, Usage};
use crate::db::{Db, IssueRef};
use crate::plan::Plan;
use crate::processors::{Processor, Validated};
use crate::report::Reporter;
use crate::result_files::{self as results, Finished, Provenance};
use crate::store::{Store, StoredIssue};

/// Everything needed to process one issue, shared by all workers.
#[derive(Debug)]
pub struct Engine {
    pub processor: Processor,
    pub model: ModelSpec,
    pub provider: Provider,
    /// `None` for `rules`.
    pub http: Option<HttpClient>,
    pub prices: PriceTable,
}

/// What happened to one issue.
#[derive(Debug)]
pub enum ItemResult {
    Done(Box<Finished>),
    Failed {
        issue: IssueRef,
        reason: String,
        usage: Usage,
        requests: u32,
        /// The error will hit every request (bad key, no quota, unknown model).
        run_wide: bool,
    },
    /// Not started because the run was interrupted or stopped.
    NotStarted(IssueRef),
}

#[derive(Debug, Default)]
pub struct RunReport {
    pub processed: usize,
    /// (issue id, reason).
    pub failed: Vec<(String, String)>,
    pub not_started: usize,
    pub requests: u64,
    pub usage: Usage,
    pub cost_usd: f64,
    /// Some results had no price (unknown model).
    pub cost_unknown: bool,
    pub elapsed: Duration,
    pub interrupted: bool,
    /// Why the run stopped early (a run-wide error), if it did.
    pub aborted: Option<String>,
    /// Sum of the confidences of the stored results (for their average).
    pub confidence_sum: f64,
}

impl RunReport {
    /// Average confidence of the stored results, if any were stored.
    pub fn avg_confidence(&self) -> Option<f64> {
        (self.processed > 0).then(|| self.confidence_sum / self.processed as f64)
    }
}

impl Engine {
    /// The engine of a plan and its provider, with an HTTP client for network providers.
    pub fn new(plan: Plan, provider: Provider) -> anyhow::Result<Self> {
        let http = match provider {
            Provider::Rules => None,
            _ => Some(HttpClient::new(plan.policy.clone())?),
        };
        Ok(Self {
            processor: plan.processor,
            model: plan.model,
            provider,
            http,
            prices: plan.prices,
        })
    }

    fn provenance(&self) -> Provenance<'_> {
        Provenance {
            processor: &self.processor,
            model: &self.model,
            mode: "realtime",
            batch_job_id: None,
        }
    }

    /// The request body for an issue, exactly as a real-time call sends it (serialised with
    /// `serde_json::to_vec`, a batch JSONL line carries the same bytes). `None` for `rules`.
    pub fn request_body(&self, issue: &StoredIssue) -> Option<serde_json::Value> {
        let (prompt, _) = self.processor.prompt(issue);
        self.provider.request_body(&prompt, None)
    }

    /// Parses a provider response body and validates the answer: what batch collection does
    /// with a succeeded output line. The error is the reason, with the tokens it cost.
    pub fn parse_and_validate(&self, body: &[u8]) -> Result<(Validated, Usage), (String, Usage)> {
        let answer = self
            .provider
            .parse_response(body)
            .map_err(|e| (e.message, e.usage))?;
        self.processor
            .validate(&answer.value)
            .map(|v| (v, answer.usage))
            .map_err(|why| (why, answer.usage))
    }

    /// Processes one issue end to end, without storing anything.
    pub async fn process(&self, store: &Store, issue: IssueRef) -> ItemResult {
        let start = Instant::now();
        let stored = match crate::store::load_issue(store, &issue.file_path, &issue.id) {
            Ok(s) => s,
            Err(reason) => {
                return ItemResult::Failed {
                    issue,
                    reason,
                    usage: Usage::default(),
                    requests: 0,
                    run_wide: false,
                }
            }
        };
        // The rules model reads the issue itself: no prompt to build.
        let mut prompt_note = None;
        let outcome = match (&self.provider, &self.http) {
            (Provider::Rules, _) => {
                Ok((self.processor.offline(&stored), Usage::default(), 0, None))
            }
            (_, Some(http)) => {
                let (prompt, note) = self.processor.prompt(&stored);
                prompt_note = note;
                self.ask(http, &prompt).await
            }
            (_, None) => Err(CallFailure {
                reason: "no HTTP client for a network provider".into(),
                usage: Usage::default(),
                requests: 0,
                run_wide: true,
            }),
        };
        match outcome {
            Ok((validated, usage, requests, response_id)) => {
                let cost_usd = self.prices.cost(&self.model, &usage, false);
                ItemResult::Done(Box::new(Finished {
                    issue,
                    validated,
                    usage,
                    cost_usd,
                    processing_time_ms: start.elapsed().as_millis() as u64,
                    requests,
                    response_id,
                    prompt_note,
                }))
            }
            Err(f) => ItemResult::Failed {
                issue,
                reason: f.reason,
                usage: f.usage,
                requests: f.requests,
                run_wide: f.run_wide,
            },
        }
    }

    /// One request, and one repair request if the answer is invalid.
    async fn ask(
        &self,
        http: &HttpClient,
        prompt: &crate::ai::Prompt,
    ) -> Result<(Validated, Usage, u32, Option<String>), CallFailure> {
        let mut usage = Usage::default();
        let mut requests = 0u32;
        let problem = match self
            .call(http, prompt, None, &mut usage, &mut requests)
            .await?
        {
            Ok(answer) => match self.processor.validate(&answer.value) {
                Ok(v) => return Ok((v, usage, requests, answer.response_id)),
                Err(problem) => Repair {
                    replay: answer.replay,
                    problem,
                },
            },
            Err(AnswerError {
                message,
                replay: Some(replay),
                ..
            }) => Repair {
                replay,
                problem: message,
            },
            Err(AnswerError { message, .. }) => {
                return Err(CallFailure {
                    reason: format!("unusable response: {message}"),
                    usage,
                    requests,
                    run_wide: false,
                })
            }
        };
        tracing::debug!(
            "invalid answer ({}); sending one repair request",
            problem.problem
        );
        let first = problem.problem.clone();
        let fail = |why: String, usage: Usage, requests: u32| {
            CallFailure {
            reason: format!("invalid answer, still invalid after one repair request: {why} (first answer: {first})"),
            usage,
            requests,
            run_wide: false,
        }
        };
        match self
            .call(http, prompt, Some(&problem), &mut usage, &mut requests)
            .await?
        {
            Ok(answer) => match self.processor.validate(&answer.value) {
                Ok(v) => Ok((v, usage, requests, answer.response_id)),
                Err(why) => Err(fail(why, usage, requests)),
            },
            Err(e) => Err(fail(e.message, usage, requests)),
        }
    }

    /// Sends one request (with transport retries); an HTTP failure ends the item.
    async fn call(
        &self,
        http: &HttpClient,
        prompt: &crate::ai::Prompt,
        repair: Option<&Repair>,
        usage: &mut Usage,
        requests: &mut u32,
    ) -> Result<Result<Answer, AnswerError>, CallFailure> {
        let Some(req) = self
            .provider
            .request_body(prompt, repair)
            .and_then(|body| self.provider.http_request(&body))
        else {
            return Err(CallFailure {
                reason: "this provider sends no requests".into(),
                usage: *usage,
                requests: *requests,
                run_wide: true,
            });
        };
        match http.send(&req).await {
            Ok(ok) => {
                *requests += ok.attempts;
                let parsed = self.provider.parse_response(&ok.body);
                match &parsed {
                    Ok(a) => usage.add(&a.usage),
                    Err(e) => usage.add(&e.usage),
                }
                Ok(parsed)
            }
            Err(HttpFailure { error, attempts }) => {
                *requests += attempts;
                let retried = if attempts > 1 {
                    format!(" after {attempts} attempts")
                } else {
                    String::new()
                };
                Err(CallFailure {
                    reason: format!(
                        "{} request failed{retried}: {error}",
                        self.model.provider.name()
                    ),
                    usage: *usage,
                    requests: *requests,
                    run_wide: error.is_run_wide(),
                })
            }
        }
    }
}

struct CallFailure {
    reason: String,
    usage: Usage,
    requests: u32,
    run_wide: bool,
}

/// Stores finished items: each result file first, then all their rows in one transaction (so a
/// row always has its file, and a backlog costs one commit instead of one per item).
pub fn store_finished(
    engine: &Engine,
    store: &Store,
    db: &mut Db,
    finished: &[Finished],
) -> Vec<Result<(), String>> {
    let mut outcomes: Vec<Result<(), String>> = Vec::with_capacity(finished.len());
    let mut rows = Vec::new();
    let mut row_of = Vec::new();
    for (i, f) in finished.iter().enumerate() {
        let written = results::build(f, engine.provenance())
            .and_then(|(doc, row)| results::write_file(store, &doc, &row, &f.issue).map(|()| row));
        match written {
            Ok(row) => {
                rows.push((row, f.validated.recommendations.clone()));
                row_of.push(i);
                outcomes.push(Ok(()));
            }
            Err(e) => outcomes.push(Err(format!("cannot store the result: {e:#}"))),
        }
    }
    if let Err(e) = db.save_results(&rows) {
        for i in row_of {
            outcomes[i] = Err(format!("cannot store the result in the database: {e:#}"));
        }
    }
    outcomes
}

/// How a run reports progress and learns about interrupts.
pub struct Control<'a, F: FnMut(&str)> {
    pub progress: &'a indicatif::ProgressBar,
    /// Each message is a Ctrl-C: the first stops new requests and lets those in flight finish
    /// (and be stored), the second abandons them.
    pub interrupts: mpsc::UnboundedReceiver<()>,
    /// Receives one-line notes for the user (interrupts, run-wide stops).
    pub on_note: F,
}

/// Processes issues in real time with bounded concurrency, a progress bar and Ctrl-C handling
/// (the first stops new requests, the second abandons those in flight), storing each result;
/// prints nothing but progress and notes.
pub async fn execute(
    engine: Engine,
    store: &Store,
    db: &mut Db,
    todo: Vec<IssueRef>,
    concurrency: usize,
    reporter: &dyn Reporter,
) -> anyhow::Result<RunReport> {
    let (tx, rx) = mpsc::unbounded_channel();
    let signals = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    let bar = reporter.progress(todo.len() as u64, "process");
    let report = run(
        Arc::new(engine),
        store,
        db,
        todo,
        concurrency,
        Control {
            progress: &bar,
            interrupts: rx,
            on_note: |n: &str| reporter.note(n),
        },
    )
    .await;
    signals.abort();
    bar.finish_and_clear();
    report
}

/// Results stored per database transaction when a backlog has built up.
const STORE_BATCH: usize = 64;

/// Runs the engine over the issues with at most `concurrency` requests in flight. A slot is
/// freed as soon as its request is answered, so storing results (done here, on the caller's
/// task, in small batches) never holds back the next requests.
pub async fn run<F: FnMut(&str)>(
    engine: Arc<Engine>,
    store: &Store,
    db: &mut Db,
    items: Vec<IssueRef>,
    concurrency: usize,
    control: Control<'_, F>,
) -> anyhow::Result<RunReport> {
    let Control {
        progress,
        mut interrupts,
        mut on_note,
    } = control;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let concurrency = if engine.provider.kind() == ProviderKind::Rules {
        // No network: parallelism beyond the cores only adds scheduling.
        concurrency.clamp(1, 4)
    } else {
        concurrency.max(1)
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<ItemResult>();
    let producer = {
        let engine = engine.clone();
        let stop = stop.clone();
        let store = store.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
        tokio::spawn(async move {
            for item in items {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                if stop.load(Ordering::SeqCst) {
                    let _ = tx.send(ItemResult::NotStarted(item));
                    continue;
                }
                let (engine, store, tx, stop) =
                    (engine.clone(), store.clone(), tx.clone(), stop.clone());
                tokio::spawn(async move {
                    let id = item.clone();
                    // A panic must not lose the item: it becomes a recorded failure.
                    let result = AssertUnwindSafe(engine.process(&store, item))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| ItemResult::Failed {
                            issue: id,
                            reason: "internal error while processing this issue".into(),
                            usage: Usage::default(),
                            requests: 0,
                            run_wide: false,
                        });
                    // A run-wide error stops new work before its slot is handed on.
                    if matches!(result, ItemResult::Failed { run_wide: true, .. }) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    drop(permit);
                    let _ = tx.send(result);
                });
            }
        })
    };
    let mut report = RunReport::default();
    let mut interrupts_open = true;
    loop {
        let first = tokio::select! {
            biased;
            signal = interrupts.recv(), if interrupts_open => {
                if signal.is_none() {
                    interrupts_open = false;
                    continue;
                }
                if report.interrupted {
                    on_note("interrupted again: abandoning requests in flight");
                    break;
                }
                report.interrupted = true;
                stop.store(true, Ordering::SeqCst);
                on_note("interrupted: no new requests; waiting for those in flight (Ctrl-C again to abandon them)");
                continue;
            }
            next = rx.recv() => next,
        };
        // Every sender is gone: all items were answered or skipped.
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < STORE_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut finished = Vec::new();
        for item in batch {
            match item {
                ItemResult::Done(f) => {
                    report.requests += u64::from(f.requests);
                    report.usage.add(&f.usage);
                    match f.cost_usd {
                        Some(c) => report.cost_usd += c,
                        None => report.cost_unknown = true,
                    }
                    finished.push(*f);
                }
                ItemResult::Failed {
                    issue,
                    reason,
                    usage,
                    requests,
                    run_wide,
                } => {
                    report.requests += u64::from(requests);
                    report.usage.add(&usage);
                    if let Some(c) = engine.prices.cost(&engine.model, &usage, false) {
                        report.cost_usd += c;
                    }
                    if run_wide && report.aborted.is_none() {
                        stop.store(true, Ordering::SeqCst);
                        on_note(&format!("stopping: {reason}"));
                        report.aborted = Some(reason.clone());
                    }
                    let written = results::write_failure(
                        store,
                        &issue,
                        engine.provenance(),
                        &reason,
                        requests,
                    );
                    if let Err(e) = written {
                        tracing::warn!("cannot record the failure of {}: {e:#}", issue.id);
                    }
                    report.failed.push((issue.id, reason));
                    progress.inc(1);
                }
                ItemResult::NotStarted(_) => report.not_started += 1,
            }
        }
        // File and database writes block: tell a multi-threaded runtime, so requests in flight
        // keep being driven by the other workers meanwhile.
        let outcomes = if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| store_finished(&engine, store, db, &finished))
        } else {
            store_finished(&engine, store, db, &finished)
        };
        for (f, outcome) in finished.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    report.processed += 1;
                    report.confidence_sum += f.validated.confidence;
                }
                Err(reason) => report.failed.push((f.issue.id.clone(), reason)),
            }
            progress.inc(1);
        }
    }
    producer.abort();
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::{Endpoint, GenSettings, Secret};
    use crate::processors::Options;
    use crate::store::{Issue, Metadata};

    fn engine(model: &str) -> Engine {
        let spec = ModelSpec::parse(model).unwrap();
        let endpoint = Endpoint {
            base_url: "http://127.0.0.1:9".into(),
            key: Secret::new("k"),
        };
        Engine {
            processor: Processor::get("product-labeling", &Options::default()).unwrap(),
            model: spec.clone(),
            provider: Provider::new(&spec, Some(endpoint), GenSettings::default()).unwrap(),
            http: None,
            prices: PriceTable::builtin(),
        }
    }

    fn issue() -> StoredIssue {
        StoredIssue {
            org: "o".into(),
            repo: "r".into(),
            issue: Issue {
                number: 1,
                title: "kotsadm crash".into(),
                body: Some("b".into()),
                state: "open".into(),
                labels: vec![],
                user: None,
                comments: vec![],
                created_at: None,
                updated_at: None,
                attachments: vec![],
                id: None,
                html_url: None,
                closed_at: None,
                comment_count: None,
            },
            metadata: Metadata::now(),
        }
    }

    #[test]
    fn batch_bodies_are_byte_identical_to_real_time_requests() {
        for model in ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"] {
            let e = engine(model);
            let body = e.request_body(&issue()).unwrap();
            let sent = e.provider.http_request(&body).unwrap().body;
            assert_eq!(serde_json::to_vec(&body).unwrap(), sent);
            assert_eq!(e.request_body(&issue()).unwrap(), body);
        }
        assert!(engine("rules").request_body(&issue()).is_none());
    }

    #[test]
    fn parse_and_validate_accepts_good_answers_and_explains_bad_ones() {
        let e = engine("anthropic:claude-haiku-4-5");
        let good = br#"{"content":[{"type":"tool_use","id":"t","name":"product_labeling","input":{"recommended_labels":[{"label":"product::kots","confidence":0.9,"reasoning":"r"}],"current_labels_assessment":[],"confidence":0.9,"summary":"s","reasoning":"r"}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5}}"#;
        let (v, u) = e.parse_and_validate(good).unwrap();
        assert_eq!(v.recommendations[0].value, "product::kots");
        assert_eq!(u.completion_tokens, 5);
        let bad = br#"{"content":[{"type":"tool_use","id":"t","name":"product_labeling","input":{"recommended_labels":[{"label":"x","confidence":0.9,"reasoning":"r"}],"current_labels_assessment":[],"confidence":0.9,"summary":"s","reasoning":"r"}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5}}"#;
        let (why, u) = e.parse_and_validate(bad).unwrap_err();
        assert!(why.contains("not in the taxonomy"));
        assert_eq!(u.prompt_tokens, 10);
    }
}
