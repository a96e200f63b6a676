//! Settings resolved once from the global CLI flags, environment and defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::GlobalArgs;
use crate::printer::OutputFormat;

const DEFAULT_DATA_DIR: &str = "data";
const DEFAULT_LOCK_TIMEOUT_SECS: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub format: OutputFormat,
    pub lock_timeout: Duration,
    pub verbose: u8,
    pub quiet: bool,
}

impl Settings {
    pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Self> {
        let secs = global.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT_SECS);
        if !secs.is_finite() || secs < 0.0 {
            return Err(crate::error::user(format!(
                "lock timeout must be a non-negative number of seconds, got {secs}"
            )));
        }
        Ok(Self {
            data_dir: global
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            format: global.format,
            lock_timeout: Duration::from_secs_f64(secs),
            verbose: global.verbose,
            quiet: global.quiet,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("issues.duckdb")
    }
}
