//! github-analysis: parse → logging → runtime → dispatch → error report → exit status.
//!
//! The modules form layers, and every import points down (docs/architecture.md draws them;
//! `tests/it/layers.rs` checks them):
//! `cli` → `commands` (+ `printer`) → `pipeline` → `batch` → `realtime` → `plan` →
//! `recommendations` → (`github`, `import_files`, `ingest`, `result_files`) → `db` → `processors` → `ai` → `store` →
//! (`env`, `error`, `http`, `report`, `table`).

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod ai;
pub mod batch;
pub mod cli;
pub mod commands;
pub mod db;
pub mod env;
pub mod error;
pub mod github;
pub mod http;
pub mod import_files;
pub mod ingest;
pub mod learn;
pub mod pipeline;
pub mod plan;
pub mod printer;
pub mod processors;
pub mod quality;
pub mod realtime;
pub mod recommendations;
pub mod report;
pub mod result_files;
pub mod store;
pub mod table;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::commands::Settings;
use crate::error::ExitStatus;
use crate::printer::Printer;

pub fn main() -> ExitCode {
    // Keys and settings may live in a `.env` file in the working directory; real env wins. Only
    // the working directory's: a `.env` in some parent folder could otherwise redirect
    // `OPENAI_BASE_URL` (and so the key) to a server of its writer's choosing.
    let _ = dotenvy::from_path(".env");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit 2.
            let status = if e.use_stderr() {
                ExitStatus::Error
            } else {
                ExitStatus::Success
            };
            let _ = e.print();
            return status.into();
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let printer = Printer::new(cli.global.format, cli.global.quiet);
    let result = Settings::resolve(&cli.global).and_then(|settings| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let ctx = commands::Ctx::new(settings);
        runtime.block_on(commands::dispatch(cli.command, &ctx))
    });
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            let status = ExitStatus::of_error(&e);
            if !error::is_broken_pipe(&e) {
                printer.error(&e);
            }
            status.into()
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "github_analysis=info,warn",
        (false, 2) => "github_analysis=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env(env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}
