//! The only module that talks to DuckDB: opening (with a bounded wait for the file lock),
//! migrations, and one file per table family. Everything outside gets typed rows.

mod ai_results;
mod batch_items;
mod batch_jobs;
mod batch_limits;
mod batch_states;
mod collection;
mod discover;
mod issues;
mod label_changes;
pub mod migrations;
pub mod quality;
mod query;
mod reader;
pub mod recommendations;
mod selection;
mod status;
pub mod value;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use duckdb::{AccessMode, Config, Connection};

use crate::error::{UserContext, UserError};

pub use ai_results::{IssueRef, ResultRow};
pub use batch_jobs::{
    Backend, BatchItem, BatchJob, BatchPart, ItemStatus, ItemUpdate, JobStatus, PartStatus,
};
pub use batch_limits::LearnedLimits;
pub use batch_states::sql_list;
pub use collection::{AttachmentRow, CachedPage};
pub use discover::{DiscoverReport, DiscoverScope};
pub use issues::{FileRecord, LoadedIssue};
pub use label_changes::LabelChange;
pub use quality::{EvalRow, EvaluationRecord, LabeledDoc, QualityScope, TrainedModelRecord};
pub use reader::Reader;
pub use recommendations::{Decision, RecFilter, RecLabel, RecRow, RecStatus, RecSummary};
pub use selection::SelectionSize;
pub use status::{DbCounts, RepoCounts};

/// A read-write connection; migrations have been applied.
///
/// DuckDB lets one process hold a database file for writing, and readers of other processes are
/// refused meanwhile. So a long run must not keep the file across network calls or a prompt:
/// [`Db::release`] closes the connection (the lock goes with it) and the next use reopens it,
/// waiting for the lock like the first open did (docs/architecture.md, "Who holds the database").
pub struct Db {
    conn: OnceCell<Connection>,
    /// Where to reopen a released connection; `None` for an in-memory database, which is never
    /// released (closing it would lose it).
    file: Option<(PathBuf, Duration)>,
    /// `limit_memory`'s setting, applied again when the connection is reopened.
    memory_limit_mb: std::cell::Cell<Option<u64>>,
}

/// A read-only connection for user SQL: DuckDB itself refuses writes, and external access
/// (reading or writing arbitrary files, installing extensions) is switched off.
pub struct ReadOnlyDb {
    conn: Connection,
}

/// How long to sleep between attempts to take the database lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

fn base_config() -> duckdb::Result<Config> {
    // Nothing may reach for the network: extensions we use are compiled in.
    Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")
}

impl Db {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path, lock_timeout: Duration) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .user_context(|| format!("cannot create data directory {}", dir.display()))?;
        }
        let mut db = Self {
            conn: OnceCell::new(),
            file: Some((path.to_path_buf(), lock_timeout)),
            memory_limit_mb: Default::default(),
        };
        db.conn_mut()?;
        Ok(db)
    }

    /// Closes the connection, releasing the file lock, until the next use. A no-op for an
    /// in-memory database.
    pub fn release(&mut self) {
        if self.file.is_some() {
            self.conn.take();
        }
    }

    /// Whether this process holds the database file now.
    pub fn is_open(&self) -> bool {
        self.conn.get().is_some()
    }

    /// The connection, reopened (and the schema checked) when it was released.
    fn conn(&self) -> anyhow::Result<&Connection> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let (path, lock_timeout) = self
            .file
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("in-memory database closed"))?;
        let mut conn = open_waiting(path, *lock_timeout, base_config)?;
        migrations::apply(&mut conn).map_err(|e| newer_or(e, path))?;
        if let Some(mb) = self.memory_limit_mb.get() {
            set_memory_limit(&conn, mb)?;
        }
        Ok(self.conn.get_or_init(|| conn))
    }

    fn conn_mut(&mut self) -> anyhow::Result<&mut Connection> {
        self.conn()?;
        self.conn
            .get_mut()
            .ok_or_else(|| anyhow::anyhow!("database connection lost"))
    }

    /// A private in-memory database, for tests and benchmarks.
    pub fn open_in_memory() -> anyhow::Result<Self> {
        let mut conn = Connection::open_in_memory_with_flags(base_config()?)?;
        migrations::apply(&mut conn)?;
        Ok(Self {
            conn: OnceCell::from(conn),
            file: None,
            memory_limit_mb: Default::default(),
        })
    }

    /// Caps the memory DuckDB keeps for this database (its buffer pool spills to the file
    /// beyond it), so a bulk load of any size runs in flat memory.
    pub fn limit_memory(&self, megabytes: u64) -> anyhow::Result<()> {
        set_memory_limit(self.conn()?, megabytes)?;
        self.memory_limit_mb.set(Some(megabytes));
        Ok(())
    }

    /// Versions recorded in `schema_migrations`.
    pub fn applied_migrations(&self) -> anyhow::Result<Vec<u32>> {
        migrations::applied(self.conn()?)
    }
}

impl ReadOnlyDb {
    /// Opens the database read-only, first creating or migrating it when needed.
    pub fn open(path: &Path, lock_timeout: Duration) -> anyhow::Result<Self> {
        if !path.exists() {
            drop(Db::open(path, lock_timeout)?);
        }
        let ro = open_waiting(path, lock_timeout, read_only_config)?;
        let done = migrations::applied(&ro)?;
        migrations::refuse_newer(&done).map_err(|e| newer_or(e.into(), path))?;
        if done.len() < migrations::MIGRATIONS.len() {
            drop(ro);
            drop(Db::open(path, lock_timeout)?);
            let conn = open_waiting(path, lock_timeout, read_only_config)?;
            return Ok(Self { conn });
        }
        Ok(Self { conn: ro })
    }
}

/// A newer schema is the user's to resolve (exit 1, the message first); any other migration
/// failure keeps its cause under "cannot migrate".
fn newer_or(e: anyhow::Error, path: &Path) -> anyhow::Error {
    match e.downcast::<migrations::NewerSchema>() {
        Ok(newer) => crate::error::user(format!("database {}: {newer}", path.display())),
        Err(e) => e.context(UserError(format!(
            "cannot migrate database {}",
            path.display()
        ))),
    }
}

fn set_memory_limit(conn: &Connection, megabytes: u64) -> anyhow::Result<()> {
    conn.execute_batch(&format!("SET memory_limit = '{megabytes}MB'"))?;
    Ok(())
}

fn read_only_config() -> duckdb::Result<Config> {
    // Settings locked (no `SET`), on top of the statement check of `query.rs` (which also
    // refuses `COPY … TO` the temp directory external access still allows).
    base_config()?
        .access_mode(AccessMode::ReadOnly)?
        .enable_external_access(false)?
        .with("lock_configuration", "true")
}

/// Opens the file, waiting up to `timeout` while another process holds its lock.
fn open_waiting(
    path: &Path,
    timeout: Duration,
    config: fn() -> duckdb::Result<Config>,
) -> anyhow::Result<Connection> {
    waiting_for_lock(path, timeout, || {
        Connection::open_with_flags(path, config()?)
    })
}

/// Tries `attempt` (an open or an ATTACH of the file at `path`) until it gets the file's lock
/// or `timeout` has passed. DuckDB lets a single process open a database for writing; a second
/// one must wait, then fail clearly.
fn waiting_for_lock<T>(
    path: &Path,
    timeout: Duration,
    mut attempt: impl FnMut() -> duckdb::Result<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut announced = false;
    loop {
        match attempt() {
            Ok(done) => return Ok(done),
            Err(e) if is_lock_error(&e) => {
                if start.elapsed() >= timeout {
                    return Err(anyhow::Error::new(e).context(UserError(format!(
                        "database {} is locked by another process (DuckDB allows one writer); \
                         waited {:.1}s — retry when it finishes, or raise --lock-timeout / {}",
                        path.display(),
                        timeout.as_secs_f64(),
                        crate::env::LOCK_TIMEOUT
                    ))));
                }
                if !announced {
                    tracing::warn!(
                        "database {} is locked by another process; waiting",
                        path.display()
                    );
                    announced = true;
                }
                std::thread::sleep(LOCK_POLL);
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(UserError(format!(
                    "cannot open database {}",
                    path.display()
                ))));
            }
        }
    }
}

fn is_lock_error(e: &duckdb::Error) -> bool {
    let msg = e.to_string();
    msg.contains("Could not set lock") || msg.contains("Conflicting lock")
}
