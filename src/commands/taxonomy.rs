//! `taxonomy init`: a taxonomy TOML from the labels a repository already uses (name, GitHub
//! description, usage count), marked exclusive when no issue carries two of them.

use crate::cli::{TaxonomyCommand, TaxonomyInitArgs};
use crate::commands::Ctx;
use crate::db::QualityScope;
use crate::error::{user, ExitStatus};
use crate::processors::taxonomy::{init_toml, Taxonomy};

pub fn run(ctx: &Ctx, cmd: TaxonomyCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        TaxonomyCommand::Init(a) => init(ctx, &a),
    }
}

fn init(ctx: &Ctx, a: &TaxonomyInitArgs) -> anyhow::Result<ExitStatus> {
    let source = match &a.repo {
        Some(r) => format!("{}/{r}", a.org),
        None => format!("{}/*", a.org),
    };
    let scope = QualityScope {
        org: Some(a.org.clone()),
        repo: a.repo.clone(),
        ..Default::default()
    };
    let db = ctx.db()?;
    let labels = db.label_usage(&scope, a.min_issues, a.prefix.as_deref())?;
    if labels.is_empty() {
        return Err(user(format!(
            "no label{} is used on at least {} issue(s) of {source}: lower --min-issues, check \
             --org/--repo, or collect issues first (`status` shows what is stored)",
            a.prefix
                .as_deref()
                .map(|p| format!(" starting with {p:?}"))
                .unwrap_or_default(),
            a.min_issues
        )));
    }
    let names: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
    let exclusive = labels.len() > 1 && db.issues_with_several(&scope, &names)? == 0;
    let name = a.name.clone().unwrap_or_else(|| match &a.prefix {
        Some(p) => format!("{source} {p}* labels"),
        None => format!("{source} labels"),
    });
    let text = init_toml(&name, &source, exclusive, &labels);
    // What we write must load: a label name GitHub accepts but a taxonomy refuses stops here.
    Taxonomy::parse(&text).map_err(|e| e.context("the generated taxonomy is invalid"))?;
    match &a.output {
        Some(path) => {
            if path.exists() {
                return Err(user(format!(
                    "{} already exists: remove it or choose another -o (your edits are never \
                     overwritten)",
                    path.display()
                )));
            }
            crate::store::atomic::write_atomic(path, text.as_bytes())?;
            ctx.printer.note(&format!(
                "wrote {} label(s) of {source} to {}{}; edit the descriptions, then `train` and \
                 `evaluate` with --taxonomy {}",
                labels.len(),
                path.display(),
                if exclusive {
                    " (exclusive: no issue has two of them)"
                } else {
                    ""
                },
                path.display()
            ));
        }
        None => ctx.printer.raw(text.as_bytes())?,
    }
    Ok(ExitStatus::Success)
}
