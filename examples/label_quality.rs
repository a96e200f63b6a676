//! Label quality benchmark on a real labelled corpus (data/corpus/dotnet-corefx-area-labels.tsv:
//! 1,615 dotnet/corefx issues, 22 human `area-*` labels, one per issue): the learned `local`
//! model against the `rules` model on a held-out time split (newest 20% by issue number), with
//! macro-F1, coverage and ECE; then training time on 50,000 issues and predictions per second.
//!
//! ```text
//! cargo run --release --example label_quality            # 50,000 training issues
//! cargo run --release --example label_quality -- --quick # 5,000
//! ```
//!
//! The rules baseline is a taxonomy made from the label names alone (each area's namespace, e.g.
//! `System.Net`, and its last segment as signals): what a user gets without writing regexes by
//! hand. The 50,000-issue set repeats the corpus (the corpus has 1,615 issues): the timing is of
//! real issue texts, the accuracy figures come from the time split only.

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use github_analysis::learn::classifier::TrainConfig;
use github_analysis::learn::{LocalModel, ModelInfo, Text, TrainingDoc};
use github_analysis::processors::local::analysis;
use github_analysis::processors::product_labeling::{Analysis, ProductLabeling};
use github_analysis::processors::taxonomy::Taxonomy;
use github_analysis::quality::{compute, Sample};
use github_analysis::store::StoredIssue;
use support::{bench_line, cpu_seconds};

/// Offline-model issues the batch local executor labels at once.
use github_analysis::batch::OFFLINE_CONCURRENCY as LOCAL_WORKERS;

struct Row {
    number: u64,
    area: String,
    title: String,
    body: String,
}

fn load() -> anyhow::Result<Vec<Row>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/corpus/dotnet-corefx-area-labels.tsv"
    );
    let text = std::fs::read_to_string(path)?;
    let mut rows: Vec<Row> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.splitn(4, '\t');
            Some(Row {
                number: f.next()?.trim().parse().ok()?,
                area: f.next()?.to_string(),
                title: f.next()?.to_string(),
                body: f.next().unwrap_or("").to_string(),
            })
        })
        .collect();
    rows.sort_by_key(|r| r.number);
    Ok(rows)
}

/// A `rules` taxonomy from label names only.
fn rules_taxonomy(labels: &[String]) -> anyhow::Result<Taxonomy> {
    let mut t = String::from("name = 'areas from names'\nexclusive = true\n");
    for l in labels {
        let ns = l.trim_start_matches("area-");
        let last = ns.rsplit('.').next().unwrap_or(ns);
        let esc = |s: &str| regex_escape(s);
        t.push_str(&format!(
            "[[labels]]\nname = '{l}'\ndescription = 'Area {ns}'\nsignals = [{{pattern = '\\b{}\\b', weight = 2.0}}, {{pattern = '\\b{}\\b', weight = 1.0}}]\n",
            esc(ns),
            esc(last)
        ));
    }
    Taxonomy::parse(&t)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

fn stored(r: &Row) -> StoredIssue {
    let mut s = StoredIssue::new("dotnet", "corefx", r.number, &r.title);
    s.issue.body = Some(r.body.clone());
    s
}

fn info(labels: &[String]) -> ModelInfo {
    ModelInfo {
        processor: "product-labeling".into(),
        taxonomy_name: "dotnet areas".into(),
        taxonomy_version: "1".into(),
        taxonomy_sha256: "0".repeat(64),
        labels: labels.to_vec(),
        exclusive: true,
        created_at: String::new(),
        training_query: "data/corpus/dotnet-corefx-area-labels.tsv".into(),
        training_ids: vec![],
        metrics: serde_json::Value::Null,
    }
}

/// Training documents of `rows` (a row may come more than once: the index keeps ids unique).
fn docs<'a>(rows: impl Iterator<Item = &'a Row>, labels: &[String]) -> Vec<TrainingDoc<'a>> {
    rows.enumerate()
        .map(|(i, r)| TrainingDoc {
            id: format!("dotnet/corefx#{}-{i}", r.number),
            text: Text {
                title: &r.title,
                body: &r.body,
                comments: &[],
            },
            labels: labels
                .iter()
                .position(|l| *l == r.area)
                .into_iter()
                .collect(),
        })
        .collect()
}

/// Each held-out issue's human area beside the labels a model proposes for it.
fn samples(rows: &[Row], label: impl Fn(&StoredIssue) -> Analysis) -> Vec<Sample> {
    rows.iter()
        .map(|r| Sample {
            human: vec![r.area.clone()],
            predicted: label(&stored(r))
                .recommended_labels
                .iter()
                .map(|x| (x.label.clone(), x.confidence))
                .collect(),
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let big = if quick { 5_000 } else { 50_000 };
    let rows = load()?;
    let mut labels: Vec<String> = rows.iter().map(|r| r.area.clone()).collect();
    labels.sort();
    labels.dedup();
    let cut = rows.len() * 4 / 5;
    let (train_rows, test_rows) = rows.split_at(cut);
    println!(
        "corpus: {} issues, {} labels; time split: train {} (#{}–#{}), test {} (#{}–#{})",
        rows.len(),
        labels.len(),
        train_rows.len(),
        train_rows[0].number,
        train_rows[cut - 1].number,
        test_rows.len(),
        test_rows[0].number,
        test_rows[test_rows.len() - 1].number
    );

    // local: trained on the older 80%, scored on the newer 20%.
    let start = Instant::now();
    let model = LocalModel::train(
        info(&labels),
        &docs(train_rows.iter(), &labels),
        &TrainConfig::default(),
    )?;
    let train_s = start.elapsed().as_secs_f64();
    let local = samples(test_rows, |issue| analysis(&model, issue));
    let lm = compute(&labels, true, &local);

    // rules: the taxonomy from label names.
    let rules = ProductLabeling::new(rules_taxonomy(&labels)?, 8_000);
    let rs = samples(test_rows, |issue| rules.rules_analysis(issue));
    let rm = compute(&labels, true, &rs);
    println!(
        "local: macro-F1 {:.3}, micro-F1 {:.3}, coverage {:.3}, ECE {:.3} (trained in {train_s:.2}s)",
        lm.macro_f1,
        lm.micro_f1,
        lm.coverage,
        lm.ece.unwrap_or(f64::NAN)
    );
    println!(
        "rules: macro-F1 {:.3}, micro-F1 {:.3}, coverage {:.3}, ECE {:.3}",
        rm.macro_f1,
        rm.micro_f1,
        rm.coverage,
        rm.ece.unwrap_or(f64::NAN)
    );
    let auto: Vec<&str> = lm
        .labels
        .iter()
        .filter(|l| l.safe_to_auto_apply)
        .map(|l| l.label.as_str())
        .collect();
    println!("local labels safe to auto-apply (precision >= 0.9 at recall >= 0.5): {auto:?}");
    bench_line(
        "label_quality_macro_f1_areas",
        lm.macro_f1,
        rm.macro_f1,
        "rules taxonomy from label names",
        "local clearly above rules",
        "macro-F1",
    );
    bench_line(
        "label_quality_coverage_areas",
        lm.coverage,
        rm.coverage,
        "rules taxonomy from label names",
        "share of issues with a label",
        "share",
    );
    bench_line(
        "label_quality_ece_areas",
        lm.ece.unwrap_or(f64::NAN),
        0.10,
        "target",
        "ECE <= 0.10",
        "ECE",
    );

    // Training time on `big` issues (the corpus repeated) and prediction throughput.
    let many: Vec<&Row> = rows.iter().cycle().take(big).collect();
    let big_docs = docs(many.iter().copied(), &labels);
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let big_model = LocalModel::train(info(&labels), &big_docs, &TrainConfig::default())?;
    let big_s = start.elapsed().as_secs_f64();
    let big_cpu = cpu_seconds() - cpu0;
    println!("train on {big} issues: {big_s:.2}s wall, {big_cpu:.2}s CPU");
    bench_line(
        &format!("label_quality_train_{big}"),
        big_s,
        60.0,
        "target",
        "train on 50,000 issues <= 60 s",
        "s",
    );
    let issues: Vec<StoredIssue> = many
        .iter()
        .take(big.min(20_000))
        .map(|r| stored(r))
        .collect();
    // One core first (the per-core cost), then as the local executor runs an offline model:
    // LOCAL_WORKERS issues at a time (src/batch/local.rs), one per core of this machine.
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut labelled = 0usize;
    for i in &issues {
        labelled += analysis(&big_model, i).recommended_labels.len();
    }
    let s = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let one_core = issues.len() as f64 / s;
    println!(
        "predict on one core (full analysis with reasoning): {} issues in {s:.2}s wall = \
         {one_core:.0} issues/s; {cpu:.2}s CPU = {:.0} issues per CPU second ({labelled} labels)",
        issues.len(),
        issues.len() as f64 / cpu
    );
    bench_line(
        "label_quality_predictions_per_s_one_core",
        one_core,
        5_000.0,
        "target",
        "info: one core",
        "issues/s",
    );
    let start = Instant::now();
    let chunk = issues.len().div_ceil(LOCAL_WORKERS);
    let labelled_parallel: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = issues
            .chunks(chunk)
            .map(|part| {
                let model = &big_model;
                scope.spawn(move || {
                    part.iter()
                        .map(|i| analysis(model, i).recommended_labels.len())
                        .sum::<usize>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let s = start.elapsed().as_secs_f64();
    anyhow::ensure!(labelled_parallel == labelled, "parallel prediction differs");
    let per_s = issues.len() as f64 / s;
    println!(
        "predict with {LOCAL_WORKERS} workers: {} issues in {s:.2}s wall = {per_s:.0} issues/s",
        issues.len()
    );
    bench_line(
        "label_quality_predictions_per_s",
        per_s,
        5_000.0,
        "target",
        ">= 5,000 issues/s (2 workers, as the local executor runs)",
        "issues/s",
    );
    Ok(())
}
