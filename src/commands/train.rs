//! `train PROCESSOR --taxonomy T [--org/--repo] [--until DATE]`: learns the offline `local`
//! model from human-labelled issues in DuckDB, writes it to `models/` and records the run in
//! `trained_models` (training query, issue ids, held-out metrics).

use std::time::Instant;

use serde_json::json;

use crate::cli::TrainArgs;
use crate::commands::evaluate::scope_of;
use crate::commands::Ctx;
use crate::db::{Db, QualityScope, TrainedModelRecord};
use crate::error::ExitStatus;
use crate::learn::classifier::TrainConfig;
use crate::learn::examples::MAX_EXAMPLES;
use crate::learn::{ExampleIndex, LocalModel, ModelInfo, Text, TrainingDoc};
use crate::processors::Processor;

/// What one training run produced.
pub struct Trained {
    pub model: LocalModel,
    pub path: std::path::PathBuf,
    pub seconds: f64,
}

pub fn run(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<ExitStatus> {
    let processor = Processor::with_taxonomy(&a.processor, a.taxonomy.clone())?;
    let scope = scope_of(
        a.repo_scope.org.clone(),
        a.repo_scope.repo.clone(),
        None,
        a.until.clone(),
    )?;
    let mut db = ctx.db()?;
    let t = train(ctx, &mut db, &processor, &scope)?;
    let m = &t.model.info.metrics;
    let p = &ctx.printer;
    p.summary(&[
        ("model_file", json!(t.path.display().to_string())),
        ("taxonomy", json!(t.model.info.taxonomy_name)),
        ("exclusive", json!(t.model.info.exclusive)),
        ("training_issues", json!(t.model.info.training_ids.len())),
        ("held_out_issues", m["held_out_issues"].clone()),
        ("held_out_macro_f1", m["macro_f1"].clone()),
        ("held_out_coverage", m["coverage"].clone()),
        ("held_out_ece", m["ece"].clone()),
        ("seconds", json!((t.seconds * 100.0).round() / 100.0)),
    ])?;
    p.note(&format!(
        "`--model local` now uses this model; with no --model and no API key it is the default \
         for taxonomy {:?}. Measure it on issues it never saw with `evaluate {} --model local`{}.",
        t.model.info.taxonomy_name,
        processor.name(),
        a.until
            .as_deref()
            .map(|u| format!(" --since {u}"))
            .unwrap_or_default()
    ));
    Ok(ExitStatus::Success)
}

/// Trains, saves and records the `local` model of a processor's taxonomy on the scope's issues.
pub fn train(
    ctx: &Ctx,
    db: &mut Db,
    processor: &Processor,
    scope: &QualityScope,
) -> anyhow::Result<Trained> {
    let tax = processor.taxonomy();
    let names: Vec<String> = tax.names().iter().map(|s| s.to_string()).collect();
    let (docs, query) = db.labeled_documents(scope, &names)?;
    let start = Instant::now();
    let training: Vec<TrainingDoc<'_>> = docs
        .iter()
        .map(|d| TrainingDoc {
            id: d.id.clone(),
            text: Text {
                title: &d.title,
                body: &d.body,
                comments: &d.comments,
            },
            // Taxonomy order, so an exclusive taxonomy's softmax learns the first one listed.
            labels: names
                .iter()
                .enumerate()
                .filter(|(_, n)| d.labels.contains(n))
                .map(|(i, _)| i)
                .collect(),
        })
        .collect();
    let several = training.iter().filter(|d| d.labels.len() > 1).count();
    if tax.exclusive && several > 0 {
        ctx.printer.warn(&format!(
            "{several} issue(s) carry two or more labels of the exclusive taxonomy {:?}: the \
             model learns the first one listed in the taxonomy",
            tax.name
        ));
    }
    let info = ModelInfo {
        processor: processor.name().to_string(),
        taxonomy_name: tax.name.clone(),
        taxonomy_version: tax.version.clone(),
        taxonomy_sha256: tax.sha256.clone(),
        labels: names.clone(),
        exclusive: tax.exclusive,
        created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        training_query: query.clone(),
        training_ids: Vec::new(),
        metrics: serde_json::Value::Null,
    };
    let model = LocalModel::train(info, &training, &TrainConfig::default())?;
    let seconds = start.elapsed().as_secs_f64();
    let path = LocalModel::path(&ctx.store.models_dir(), processor.name(), &tax.sha256);
    model.save(&path)?;
    // The few-shot index (`--examples K`): the most recent training issues.
    let skip = docs.len().saturating_sub(MAX_EXAMPLES);
    let index = ExampleIndex::build(
        &model,
        training.iter().zip(&docs).skip(skip).map(|(t, d)| {
            let labels = t.labels.iter().map(|&c| names[c].clone()).collect();
            (d.id.clone(), t.text, labels)
        }),
    );
    index.save(&ExampleIndex::path(&path))?;
    let rel = path
        .strip_prefix(ctx.store.root())
        .unwrap_or(&path)
        .display()
        .to_string();
    db.save_trained_model(&TrainedModelRecord {
        processor: processor.name().to_string(),
        taxonomy_name: tax.name.clone(),
        taxonomy_version: tax.version.clone(),
        taxonomy_sha256: tax.sha256.clone(),
        file_path: rel,
        training_query: query,
        training_ids: model.info.training_ids.clone(),
        metrics_json: model.info.metrics.to_string(),
    })?;
    Ok(Trained {
        model,
        path,
        seconds,
    })
}
