//! Real-time processing: one request per issue, bounded concurrency, one repair retry for
//! invalid answers, every finished item stored at once (so an interrupt keeps it), failures
//! recorded and never fatal to the others, run-wide errors (bad key, no quota) stop new work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::ai::http::{HttpClient, HttpFailure};
use crate::ai::pricing::PriceTable;
use crate::ai::{Answer, AnswerError, ModelSpec, Provider, ProviderKind, Repair, Usage};
use crate::db::{Db, IssueRef};
use crate::processors::{Processor, Validated};
use crate::results::{self, Finished, Provenance};
use crate::store::{parse_issue, Store, StoredIssue};

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
}

impl Engine {
    fn provenance(&self) -> Provenance<'_> {
        Provenance {
            processor: &self.processor,
            model: &self.model,
            mode: "realtime",
            batch_job_id: None,
        }
    }

    /// Processes one issue end to end, without storing anything.
    pub async fn process(&self, store: &Store, issue: IssueRef) -> ItemResult {
        let start = Instant::now();
        let stored = match load_issue(store, &issue).await {
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
        let (prompt, prompt_note) = self.processor.prompt(&stored);
        let outcome = match (&self.provider, &self.http) {
            (Provider::Rules, _) => {
                Ok((self.processor.offline(&stored), Usage::default(), 0, None))
            }
            (_, Some(http)) => self.ask(http, &prompt).await,
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

async fn load_issue(store: &Store, issue: &IssueRef) -> Result<StoredIssue, String> {
    let path = store.abs(&issue.file_path);
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        format!(
            "cannot read issue file {}: {e} (run `sync`?)",
            issue.file_path
        )
    })?;
    let stored = parse_issue(&path, &bytes).map_err(|e| format!("{e:#}"))?;
    if stored.key() != issue.id {
        return Err(format!(
            "issue file {} holds {}, not {} (run `sync`)",
            issue.file_path,
            stored.key(),
            issue.id
        ));
    }
    Ok(stored)
}

/// Stores a finished item: result file first, then its row (one transaction).
pub fn store_finished(
    engine: &Engine,
    store: &Store,
    db: &mut Db,
    f: &Finished,
) -> anyhow::Result<()> {
    let (doc, row) = results::build(f, engine.provenance())?;
    results::write_file(store, &doc, &row, &f.issue)?;
    db.save_results(&[(row, f.validated.recommendations.clone())])
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

/// Runs the engine over the issues with at most `concurrency` requests in flight, storing
/// each result as soon as it is finished.
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
        // No network: parallelism only adds scheduling.
        concurrency.clamp(1, 4)
    } else {
        concurrency.max(1)
    };
    let mut results = futures::stream::iter(items)
        .map(|item| {
            let engine = engine.clone();
            let stop = stop.clone();
            let store = store.clone();
            tokio::spawn(async move {
                if stop.load(Ordering::SeqCst) {
                    return ItemResult::NotStarted(item);
                }
                engine.process(&store, item).await
            })
        })
        .buffer_unordered(concurrency);
    let mut report = RunReport::default();
    let mut interrupts_open = true;
    loop {
        let next = tokio::select! {
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
            next = results.next() => next,
        };
        let Some(joined) = next else { break };
        let item = match joined {
            Ok(item) => item,
            Err(e) => {
                // A panicking task must not take the run down; count it as a failure.
                report
                    .failed
                    .push(("(unknown issue)".into(), format!("worker task failed: {e}")));
                continue;
            }
        };
        match item {
            ItemResult::Done(f) => {
                report.requests += u64::from(f.requests);
                report.usage.add(&f.usage);
                match f.cost_usd {
                    Some(c) => report.cost_usd += c,
                    None => report.cost_unknown = true,
                }
                match store_finished(&engine, store, db, &f) {
                    Ok(()) => report.processed += 1,
                    Err(e) => {
                        let reason = format!("cannot store the result: {e:#}");
                        report.failed.push((f.issue.id.clone(), reason));
                    }
                }
                progress.inc(1);
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
                if run_wide && !stop.swap(true, Ordering::SeqCst) {
                    on_note(&format!("stopping: {reason}"));
                    report.aborted = Some(reason.clone());
                }
                if let Err(e) =
                    results::write_failure(store, &issue, engine.provenance(), &reason, requests)
                {
                    tracing::warn!("cannot record the failure of {}: {e:#}", issue.id);
                }
                report.failed.push((issue.id, reason));
                progress.inc(1);
            }
            ItemResult::NotStarted(_) => report.not_started += 1,
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
