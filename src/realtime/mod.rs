//! Real-time processing: one request per issue, bounded concurrency, one repair retry for
//! invalid answers, every finished item stored at once (so an interrupt keeps it), failures
//! recorded and never fatal to the others, run-wide errors (bad key, no quota) stop new work.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc;

mod engine;

use crate::ai::{ProviderKind, Usage};
use crate::db::{Db, IssueRef};
use crate::report::Reporter;
use crate::result_files::{self as results, Finished};
use crate::store::Store;
pub use engine::Engine;

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
    if engine.provider.kind() != ProviderKind::Rules {
        // Nothing is stored before the first answers arrive (see the release after each store).
        db.release();
    }
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
        for n in engine.take_notices() {
            on_note(&n);
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
        if engine.provider.kind() != ProviderKind::Rules {
            // The next answers are network-bound: let another process (a `query` in another
            // terminal) have the database meanwhile; the next store reopens it.
            db.release();
        }
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
