//! Command dispatch: one file per command group, one function per leaf command. Commands are
//! the only layer that knows the command line (`cli`), the settings and the printer; the layers
//! below get explicit dependencies (store, database, environment, a `Reporter`).

mod ask;
mod batch;
mod collect;
mod completions;
mod demo;
mod evaluate;
mod import;
mod models;
mod process;
mod process_query;
mod query;
mod recommendations;
mod review_terminal;
pub mod settings;
mod status;
mod sync;
mod taxonomy;
mod train;
mod update_labels;

use crate::batch::BatchManager;
use crate::cli::{AiArgs, Command};
use crate::db::{Db, ReadOnlyDb};
use crate::env::EnvFn;
use crate::error::{user, ExitStatus};
use crate::plan::{AiConfig, Plan};
use crate::printer::Printer;
use crate::store::Store;
pub use settings::Settings;

/// What every command gets: resolved settings, the printer, the file store.
pub struct Ctx {
    pub settings: Settings,
    pub printer: Printer,
    pub store: Store,
}

impl Ctx {
    pub fn new(settings: Settings) -> Self {
        Self {
            printer: Printer::new(settings.format, settings.quiet),
            store: Store::new(settings.data_dir.clone()),
            settings,
        }
    }

    pub fn db(&self) -> anyhow::Result<Db> {
        Db::open(&self.settings.db_path(), self.settings.lock_timeout)
    }

    pub fn read_only_db(&self) -> anyhow::Result<ReadOnlyDb> {
        ReadOnlyDb::open(&self.settings.db_path(), self.settings.lock_timeout)
    }

    /// The batch jobs of this data directory, reporting to the printer.
    pub fn batches<'a>(&'a self, db: &'a mut Db) -> BatchManager<'a> {
        BatchManager::new(&self.store, db, self.env(), &self.printer)
    }

    /// The GitHub client settings: `token` (from --token or GITHUB_TOKEN; `needs` says what
    /// it must allow, for the message when it is missing) and the API URLs and longest wait from
    /// the environment.
    pub fn github_config(
        &self,
        token: Option<&str>,
        needs: &str,
    ) -> anyhow::Result<crate::github::client::ClientConfig> {
        let token = token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            user(format!(
                "no GitHub token: pass --token or set GITHUB_TOKEN{needs}"
            ))
        })?;
        let var = self.env();
        crate::github::client::ClientConfig::new(
            var(crate::env::GITHUB_API_URL).as_deref(),
            var(crate::env::GITHUB_GRAPHQL_URL).as_deref(),
            token.to_string(),
            var(crate::env::GITHUB_MAX_WAIT).as_deref(),
            crate::env::retry_delay(var).map_err(user)?,
        )
    }

    /// The environment the library layers read (keys, base URLs, caps).
    pub fn env(&self) -> &'static EnvFn {
        &crate::env::process
    }

    /// The plan of a processing command: processor, model and the AI flags resolved.
    pub fn plan(&self, processor: &str, model: Option<&str>, ai: &AiArgs) -> anyhow::Result<Plan> {
        let mut config = ai_config(ai);
        config.models_dir = Some(self.store.models_dir());
        Plan::resolve(processor, model, &config, self.env(), &self.printer)
    }

    /// Reports a run that finished with something the user must look at (`error: …`) and
    /// returns the matching exit status.
    pub fn failure(&self, message: &str) -> ExitStatus {
        self.printer.error(&anyhow::anyhow!("{message}"));
        ExitStatus::Failure
    }
}

/// Refuses an --org / --repo that is not a valid GitHub name before it reaches a query or a path.
pub fn check_scope(s: &crate::cli::RepoScope) -> anyhow::Result<()> {
    check_names(s.org.as_deref(), s.repo.as_deref())
}

/// [`check_scope`] for an [`IssueScope`](crate::cli::IssueScope).
pub fn check_issue_scope(s: &crate::cli::IssueScope) -> anyhow::Result<()> {
    check_names(Some(&s.org), s.repo.as_deref())
}

fn check_names(org: Option<&str>, repo: Option<&str>) -> anyhow::Result<()> {
    if let Some(o) = org {
        crate::store::names::validate_org(o)?;
    }
    if let Some(r) = repo {
        crate::store::names::validate_repo(r)?;
    }
    Ok(())
}

/// The processing flags as the library's configuration.
pub fn ai_config(a: &AiArgs) -> AiConfig {
    AiConfig {
        taxonomy: a.taxonomy.clone(),
        token_budget: a.token_budget,
        settings: a.settings.clone(),
        prices: a.prices.clone(),
        request_timeout: a.request_timeout,
        max_retries: a.max_retries,
        max_server_wait: a.max_server_wait,
        models_dir: None,
        examples: a.examples,
    }
}

pub async fn dispatch(command: Command, ctx: &Ctx) -> anyhow::Result<ExitStatus> {
    match command {
        Command::Import(args) => import::run(ctx, &args),
        Command::Sync(args) => sync::run(ctx, &args),
        Command::Status => status::run(ctx),
        Command::Query(q) => query::run(ctx, q),
        Command::Collect(args) => collect::run(ctx, &args).await,
        Command::Process(p) => process::run(ctx, p).await,
        Command::Batch(b) => batch::run(ctx, b).await,
        Command::ProcessQuery(q) => process_query::run(ctx, q).await,
        Command::Demo(args) => demo::run(ctx, &args).await,
        Command::Completions(args) => completions::run(ctx, &args),
        Command::Models(args) => models::run(ctx, &args),
        Command::Recommendations(c) => recommendations::run(ctx, c).await,
        Command::UpdateLabels(args) => update_labels::run(ctx, &args).await,
        Command::Taxonomy(c) => taxonomy::run(ctx, c),
        Command::Train(args) => train::run(ctx, &args),
        Command::Evaluate(args) => evaluate::run(ctx, &args),
    }
}

/// The command line as typed (keys never travel on it), recorded with the batch jobs it creates.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("github-analysis {}", args.join(" "))
}
