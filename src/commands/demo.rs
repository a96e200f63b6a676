//! `demo`: the flagship workflow on the bundled sample issues, offline by default: import, a
//! taxonomy from the sample's own labels (`taxonomy init`), `train` of the `local` model on the
//! older issues, `process-query custom … --batch-mode --yes --wait` over the newer ones,
//! `evaluate` against the human labels with the HTML report, then batch status and analytics.
//! It runs the real commands, so it shows what a user's own run does.

use crate::cli::{AiArgs, DemoArgs, ProcessQueryCommand, RunArgs};
use crate::commands::{evaluate, import, process_query, train, Ctx};
use crate::db::QualityScope;
use crate::error::{user, ExitStatus};
use crate::processors::taxonomy::init_toml;
use crate::processors::{self, Processor};

/// The sample issues ship inside the binary so `demo` works from any directory.
const SAMPLES: &[(&str, &[u8])] = &[
    (
        "data/sample/dotnet-corefx-issues.json",
        include_bytes!("../../data/sample/dotnet-corefx-issues.json"),
    ),
    (
        "data/sample/webcompat-web-bugs.jsonl",
        include_bytes!("../../data/sample/webcompat-web-bugs.jsonl"),
    ),
];

/// The labelled sample repository (human `area-*` labels, one per issue).
const ORG: &str = "dotnet";
const REPO: &str = "corefx";
/// Labels on fewer sample issues than this are left out of the demo taxonomy.
const MIN_ISSUES: u64 = 5;

pub async fn run(ctx: &Ctx, args: &DemoArgs) -> anyhow::Result<ExitStatus> {
    let p = &ctx.printer;
    p.line("== 1/6 import the bundled sample issues")?;
    let sources = SAMPLES
        .iter()
        .map(|(name, bytes)| (name.to_string(), Ok(bytes.to_vec())))
        .collect();
    let status = import::import_sources(ctx, sources, None)?;
    if status != ExitStatus::Success {
        return Ok(status);
    }

    let taxonomy_path = ctx.store.root().join("demo-taxonomy.toml");
    p.line("")?;
    p.line(&format!(
        "== 2/6 taxonomy init --org {ORG} --repo {REPO} --min-issues {MIN_ISSUES} -o {}",
        taxonomy_path.display()
    ))?;
    let mut db = ctx.db()?;
    let repo_scope = QualityScope {
        org: Some(ORG.into()),
        repo: Some(REPO.into()),
        ..Default::default()
    };
    let labels = db.label_usage(&repo_scope, MIN_ISSUES, None)?;
    let names: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
    let exclusive = db.issues_with_several(&repo_scope, &names)? == 0;
    let text = init_toml(
        &format!("{ORG}/{REPO} labels"),
        &format!("{ORG}/{REPO}"),
        exclusive,
        &labels,
    );
    // The demo owns this file: each run writes it again from the same labels.
    crate::store::atomic::write_atomic(&taxonomy_path, text.as_bytes())?;
    p.line(&format!(
        "{} labels used on at least {MIN_ISSUES} issues{}",
        labels.len(),
        if exclusive {
            "; exclusive (no issue has two of them)"
        } else {
            ""
        }
    ))?;
    let processor = Processor::with_taxonomy(
        processors::product_labeling::NAME,
        Some(taxonomy_path.clone()),
    )?;

    // The sample has no dates: issue numbers order it in time.
    let (docs, _) = db.labeled_documents(&repo_scope, &names)?;
    let mut numbers: Vec<u64> = docs
        .iter()
        .filter_map(|d| d.id.rsplit('#').next()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let split = *numbers
        .get(numbers.len() * 2 / 3)
        .ok_or_else(|| user("the sample has no labelled issues"))?;
    p.line("")?;
    p.line(&format!(
        "== 3/6 train product-labeling --taxonomy {} on the older two thirds (issues #{}–#{})",
        taxonomy_path.display(),
        numbers[0],
        split - 1
    ))?;
    let trained = train::train(
        ctx,
        &mut db,
        &processor,
        &QualityScope {
            below_number: Some(split),
            ..repo_scope.clone()
        },
    )?;
    p.line(&format!(
        "trained on {} issues in {:.2}s → {}",
        trained.model.info.training_ids.len(),
        trained.seconds,
        trained.path.display()
    ))?;
    drop(db);

    let sql = format!(
        "SELECT id FROM issues WHERE org = '{ORG}' AND repo = '{REPO}' AND number >= {split}"
    );
    p.line("")?;
    p.line(&format!(
        "== 4/6 process-query custom product-labeling \"{sql}\" --batch-mode --yes --wait --model {} --taxonomy {}",
        args.model,
        taxonomy_path.display()
    ))?;
    let custom = ProcessQueryCommand::Custom {
        processor: processors::product_labeling::NAME.to_string(),
        sql,
        limit: None,
        run: RunArgs {
            batch_mode: true,
            model: Some(args.model.clone()),
            yes: true,
            dry_run: false,
            concurrency: None,
            wait: true,
            poll_interval: 1.0,
            ai: AiArgs {
                taxonomy: Some(taxonomy_path.clone()),
                ..Default::default()
            },
        },
    };
    let status = process_query::run(ctx, custom).await?;
    if status != ExitStatus::Success {
        return Ok(status);
    }

    let html = ctx.store.root().join("quality-report.html");
    p.line("")?;
    p.line(&format!(
        "== 5/6 evaluate product-labeling --org {ORG} --repo {REPO} --taxonomy {} --html {}",
        taxonomy_path.display(),
        html.display()
    ))?;
    let mut db = ctx.db()?;
    let e = evaluate::evaluate(ctx, &mut db, &processor, None, &repo_scope)?;
    drop(db);
    evaluate::write_html(&html, &e)?;
    evaluate::print(ctx, &e)?;
    let m = &e.metrics;
    p.line("")?;
    p.line(&format!(
        "Quality on {} newer issues the model never saw: macro-F1 {:.3}, coverage {:.1}%, ECE {}. \
         Report: {}",
        m.issues,
        m.macro_f1,
        m.coverage * 100.0,
        m.ece.map_or("–".into(), |v| format!("{v:.3}")),
        html.display()
    ))?;

    p.line("")?;
    p.line("== 6/6 process-query batch-status, then analytics")?;
    let status = process_query::run(
        ctx,
        ProcessQueryCommand::BatchStatus {
            no_refresh: false,
            limit: 10,
        },
    )
    .await?;
    if status != ExitStatus::Success {
        return Ok(status);
    }
    process_query::run(ctx, ProcessQueryCommand::Analytics).await
}
