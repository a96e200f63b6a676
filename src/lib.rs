//! github-analysis: parse → logging → runtime → dispatch → error report → exit code.

pub mod ai;
pub mod batch;
pub mod cli;
pub mod commands;
pub mod db;
pub mod error;
pub mod github;
pub mod import;
pub mod pipeline;
pub mod printer;
pub mod processors;
pub mod progress;
pub mod realtime;
pub mod results;
pub mod settings;
pub mod store;
pub mod sync;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::settings::Settings;

pub fn main() -> ExitCode {
    // Keys and settings may live in a `.env` file in the working directory; real env wins.
    let _ = dotenvy::dotenv();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit 2.
            let code = if e.use_stderr() {
                error::EXIT_UNEXPECTED
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let result = Settings::resolve(&cli.global).and_then(|settings| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let ctx = commands::Ctx::new(settings);
        runtime.block_on(commands::dispatch(cli.command, &ctx))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => error::report(&e),
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
    let filter = tracing_subscriber::EnvFilter::try_from_env(settings::ENV_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}
