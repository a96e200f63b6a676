//! `evaluate PROCESSOR`: stored recommendations against the human labels of a taxonomy —
//! per-label precision/recall/F1, micro/macro F1, coverage, confusion matrix, precision and
//! coverage per threshold, ECE with its reliability table, safe auto-apply thresholds — printed
//! as tables or JSON, recorded in `evaluations`, optionally written as an HTML report. Results
//! of the `local` model on the issues it was trained on are never scored.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::ai::ModelSpec;
use crate::cli::EvaluateArgs;
use crate::commands::Ctx;
use crate::db::{Db, EvaluationRecord, QualityScope};
use crate::error::{user, ExitStatus};
use crate::learn::LocalModel;
use crate::printer::{OutputFormat, Table};
use crate::processors::Processor;
use crate::quality::html::{self, ReportHeader};
use crate::quality::{compute, Metrics, Sample};

/// A date flag: `YYYY-MM-DD` or an RFC 3339 timestamp.
fn date(flag: &str, v: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let ok = chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").is_ok()
        || chrono::DateTime::parse_from_rfc3339(&v).is_ok();
    if ok {
        Ok(Some(v))
    } else {
        Err(user(format!(
            "{flag} {v:?}: expected a date like 2024-06-30 (or an RFC 3339 timestamp)"
        )))
    }
}

/// The scope of a quality command, with its dates checked.
pub fn scope_of(
    org: Option<String>,
    repo: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> anyhow::Result<QualityScope> {
    Ok(QualityScope {
        org,
        repo,
        since: date("--since", since)?,
        until: date("--until", until)?,
        ..Default::default()
    })
}

/// One evaluation: its metrics, the JSON document and what was left out.
pub struct Evaluation {
    pub metrics: Metrics,
    pub document: Value,
    pub header: ReportHeader,
}

pub fn run(ctx: &Ctx, a: &EvaluateArgs) -> anyhow::Result<ExitStatus> {
    let processor = Processor::with_taxonomy(&a.processor, a.taxonomy.clone())?;
    let scope = scope_of(
        a.repo_scope.org.clone(),
        a.repo_scope.repo.clone(),
        a.since.clone(),
        a.until.clone(),
    )?;
    let model = a
        .model
        .as_deref()
        .map(|m| ModelSpec::parse(m).map(|s| s.id()))
        .transpose()?;
    let mut db = ctx.db()?;
    let e = evaluate(ctx, &mut db, &processor, model.as_deref(), &scope)?;
    if let Some(path) = &a.html {
        write_html(path, &e)?;
    }
    print(ctx, &e)?;
    if let Some(path) = &a.html {
        ctx.printer
            .note(&format!("HTML report written to {}", path.display()));
    }
    Ok(ExitStatus::Success)
}

/// Writes the HTML report of an evaluation.
pub fn write_html(path: &std::path::Path, e: &Evaluation) -> anyhow::Result<()> {
    let page = html::render(&e.header, &e.metrics);
    crate::store::atomic::write_atomic(path, page.as_bytes())
        .map_err(|err| user(format!("cannot write {}: {err:#}", path.display())))
}

/// Evaluates the stored results and records the run in `evaluations`.
pub fn evaluate(
    ctx: &Ctx,
    db: &mut Db,
    processor: &Processor,
    model: Option<&str>,
    scope: &QualityScope,
) -> anyhow::Result<Evaluation> {
    let tax = processor.taxonomy();
    let names: Vec<String> = tax.names().iter().map(|s| s.to_string()).collect();
    let mut rows = db.evaluation_rows(processor.name(), model, scope, &names)?;
    // Never score the local model on what it learnt from.
    let mut excluded = 0usize;
    if rows.iter().any(|r| r.model == "local") {
        let path = LocalModel::path(&ctx.store.models_dir(), processor.name(), &tax.sha256);
        let trained: HashSet<String> = match LocalModel::load(&path) {
            Ok(m) => m.info.training_ids.into_iter().collect(),
            Err(_) => {
                return Err(user(format!(
                    "results of the local model exist but its file {} cannot be read, so the \
                     issues it was trained on are unknown: train again, or pass --model to \
                     evaluate another model",
                    path.display()
                )))
            }
        };
        let before = rows.len();
        rows.retain(|r| r.model != "local" || !trained.contains(&r.issue_id));
        excluded = before - rows.len();
    }
    if rows.is_empty() {
        return Err(user(format!(
            "nothing to evaluate: no stored {} result{} on issues with human labels of taxonomy \
             {:?} ({}){}",
            processor.name(),
            model.map(|m| format!(" of {m}")).unwrap_or_default(),
            tax.name,
            scope.describe(),
            if excluded > 0 {
                format!("; {excluded} result(s) of the local model are on its training issues")
            } else {
                String::new()
            }
        )));
    }
    let mut models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    models.sort_unstable();
    models.dedup();
    if models.len() > 1 {
        ctx.printer.warn(&format!(
            "results of {} models are mixed ({}): pass --model to evaluate one",
            models.len(),
            models.join(", ")
        ));
    }
    let model_name = if models.len() == 1 {
        models[0].to_string()
    } else {
        "*".to_string()
    };
    let samples: Vec<Sample> = rows
        .iter()
        .map(|r| Sample {
            human: r.human.clone(),
            predicted: r.predicted.clone(),
        })
        .collect();
    let metrics = compute(&names, tax.exclusive, &samples);
    let document = json!({
        "processor": processor.name(),
        "model": model_name,
        "taxonomy": {"name": tax.name, "version": tax.version, "sha256": tax.sha256},
        "scope": scope.describe(),
        "excluded_training_issues": excluded,
        "metrics": metrics,
    });
    db.save_evaluation(&EvaluationRecord {
        processor: processor.name().to_string(),
        model: model_name.clone(),
        taxonomy_name: tax.name.clone(),
        taxonomy_version: tax.version.clone(),
        taxonomy_sha256: tax.sha256.clone(),
        scope: scope.describe(),
        issue_count: metrics.issues,
        macro_f1: Some(metrics.macro_f1),
        micro_f1: Some(metrics.micro_f1),
        coverage: Some(metrics.coverage),
        ece: metrics.ece,
        metrics_json: document.to_string(),
    })?;
    let header = ReportHeader {
        processor: processor.name().to_string(),
        model: model_name,
        taxonomy: format!("{} v{}", tax.name, tax.version),
        scope: scope.describe(),
        created_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    };
    Ok(Evaluation {
        metrics,
        document,
        header,
    })
}

fn r3(v: f64) -> Value {
    json!((v * 1000.0).round() / 1000.0)
}

fn opt3(v: Option<f64>) -> Value {
    v.map_or(Value::Null, r3)
}

/// Prints an evaluation: the JSON document, or summary and tables.
pub fn print(ctx: &Ctx, e: &Evaluation) -> anyhow::Result<()> {
    let p = &ctx.printer;
    if p.format == OutputFormat::Json {
        p.json(&e.document)?;
        return Ok(());
    }
    let m = &e.metrics;
    p.summary(&[
        ("processor", json!(e.header.processor)),
        ("model", json!(e.header.model)),
        ("taxonomy", json!(e.header.taxonomy)),
        ("scope", json!(e.header.scope)),
        ("issues", json!(m.issues)),
        (
            "excluded_training_issues",
            e.document["excluded_training_issues"].clone(),
        ),
        ("macro_f1", r3(m.macro_f1)),
        ("micro_f1", r3(m.micro_f1)),
        ("coverage", r3(m.coverage)),
        ("ece", opt3(m.ece)),
    ])?;
    let mut t = Table::new([
        "label",
        "precision",
        "recall",
        "f1",
        "support",
        "predicted",
        "threshold_p90",
        "recall_at_threshold",
        "auto_apply",
    ]);
    for l in &m.labels {
        t.push(vec![
            json!(l.label),
            r3(l.precision),
            r3(l.recall),
            r3(l.f1),
            json!(l.support),
            json!(l.predicted),
            opt3(l.safe_threshold),
            opt3(l.recall_at_safe_threshold),
            json!(if l.safe_to_auto_apply {
                "safe"
            } else {
                "not safe to auto-apply"
            }),
        ]);
    }
    p.line("")?;
    p.titled_table("Per label", &t)?;
    let mut th = Table::new(["threshold", "precision", "coverage", "predictions"]);
    for x in m.thresholds.iter().step_by(2) {
        th.push(vec![
            r3(x.threshold),
            opt3(x.precision),
            r3(x.coverage),
            json!(x.predictions),
        ]);
    }
    p.line("")?;
    p.titled_table("Precision and coverage per confidence threshold", &th)?;
    let mut rel = Table::new(["confidence", "predictions", "mean_confidence", "accuracy"]);
    for b in m.reliability.iter().filter(|b| b.count > 0) {
        rel.push(vec![
            json!(format!("{:.2}-{:.2}", b.lower, b.upper)),
            json!(b.count),
            opt3(b.mean_confidence),
            opt3(b.accuracy),
        ]);
    }
    p.line("")?;
    p.titled_table("Reliability (15 bins; empty bins omitted)", &rel)?;
    if let Some(c) = &m.confusion {
        let mut ct = Table::new(
            std::iter::once("human \\ predicted".to_string()).chain(c.labels.iter().cloned()),
        );
        for (i, row) in c.cells.iter().enumerate() {
            ct.push(
                std::iter::once(json!(c.labels[i]))
                    .chain(row.iter().map(|v| json!(v)))
                    .collect(),
            );
        }
        p.line("")?;
        p.titled_table("Confusion matrix", &ct)?;
    }
    Ok(())
}
