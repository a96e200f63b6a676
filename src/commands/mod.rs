//! Command dispatch: one file per command group, one function per leaf command.

mod batch;
mod collect;
mod demo;
mod import;
pub(crate) mod process;
mod process_query;
mod query;
mod status;
mod sync;

use crate::cli::Command;
use crate::db::{Db, ReadOnlyDb};
use crate::printer::Printer;
use crate::settings::Settings;
use crate::store::Store;

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
}

pub async fn dispatch(command: Command, ctx: &Ctx) -> anyhow::Result<()> {
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
    }
}

/// The command line as typed (keys never travel on it), recorded with the batch jobs it creates.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("github-analysis {}", args.join(" "))
}
