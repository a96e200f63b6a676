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

use std::cell::Cell;
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
/// [`Db::release`] detaches the file (the lock goes with it) and the next use attaches it again,
/// waiting for the lock like the first open did (docs/architecture.md, "Who holds the database").
///
/// The file is attached to an in-memory instance that lives as long as the `Db`: building an
/// instance (its catalog of built-in functions and extensions) costs ~35 ms of CPU, attaching a
/// file ~7 ms, and a real-time run releases and takes the file back after every stored batch.
pub struct Db {
    conn: Connection,
    /// The file and lock timeout; `None` for an in-memory database, which is never released
    /// (detaching it would lose it).
    file: Option<(PathBuf, Duration)>,
    /// Whether the file is attached (and the default database) now.
    attached: Cell<bool>,
}

/// A read-only connection for user SQL: DuckDB itself refuses writes, and external access
/// (reading or writing arbitrary files, installing extensions) is switched off.
pub struct ReadOnlyDb {
    conn: Connection,
}

/// What the database file is called inside its instance.
const ALIAS: &str = "data";

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
        // Spills go beside the file, where DuckDB puts them for a file it opens itself (an
        // in-memory instance would use `.tmp` in the working directory).
        let spill = format!("{}.tmp", path.display());
        let conn =
            Connection::open_in_memory_with_flags(base_config()?.with("temp_directory", &spill)?)
                .map_err(|e| {
                anyhow::Error::new(e).context(UserError(format!(
                    "cannot open database {}",
                    path.display()
                )))
            })?;
        let db = Self {
            conn,
            file: Some((path.to_path_buf(), lock_timeout)),
            attached: Cell::new(false),
        };
        db.conn()?;
        Ok(db)
    }

    /// Detaches the file, releasing its lock, until the next use. A no-op for an in-memory
    /// database.
    pub fn release(&mut self) {
        if self.file.is_none() || !self.attached.get() {
            return;
        }
        // DETACH closes the file (checkpointing it) like closing the instance did; the
        // instance itself stays for the next attach.
        if let Err(e) = detach(&self.conn, ALIAS) {
            tracing::warn!("could not release the database file: {e}");
            return;
        }
        self.attached.set(false);
    }

    /// Whether this process holds the database file now.
    pub fn is_open(&self) -> bool {
        self.file.is_none() || self.attached.get()
    }

    /// The connection, with the file attached again (and the schema checked) when it was
    /// released.
    fn conn(&self) -> anyhow::Result<&Connection> {
        let Some((path, lock_timeout)) = &self.file else {
            return Ok(&self.conn);
        };
        if self.attached.get() {
            return Ok(&self.conn);
        }
        attach(
            &self.conn,
            path,
            ALIAS,
            AccessMode::ReadWrite,
            *lock_timeout,
        )?;
        self.attached.set(true);
        // A file that cannot be migrated (a newer schema, say) is let go at once.
        if let Err(e) = migrations::apply(&self.conn) {
            if detach(&self.conn, ALIAS).is_ok() {
                self.attached.set(false);
            }
            return Err(newer_or(e, path));
        }
        Ok(&self.conn)
    }

    fn conn_mut(&mut self) -> anyhow::Result<&mut Connection> {
        self.conn()?;
        Ok(&mut self.conn)
    }

    /// A private in-memory database, for tests and benchmarks.
    pub fn open_in_memory() -> anyhow::Result<Self> {
        let conn = Connection::open_in_memory_with_flags(base_config()?)?;
        migrations::apply(&conn)?;
        Ok(Self {
            conn,
            file: None,
            attached: Cell::new(true),
        })
    }

    /// Caps the memory DuckDB keeps for this database (its buffer pool spills to the file
    /// beyond it), so a bulk load of any size runs in flat memory. A setting of the instance:
    /// it holds across releases.
    pub fn limit_memory(&self, megabytes: u64) -> anyhow::Result<()> {
        self.conn()?
            .execute_batch(&format!("SET memory_limit = '{megabytes}MB'"))?;
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

/// Attaches the file at `path` to the instance of `conn` as `alias`, waiting for its lock like
/// an open does, and makes it the default database. Shared by [`Db`] and [`Reader`].
fn attach(
    conn: &Connection,
    path: &Path,
    alias: &str,
    mode: AccessMode,
    timeout: Duration,
) -> anyhow::Result<()> {
    let target = path.to_string_lossy().replace('\'', "''");
    let options = match mode {
        AccessMode::ReadOnly => " (READ_ONLY)",
        _ => "",
    };
    let sql = format!("ATTACH '{target}' AS {alias}{options}");
    waiting_for_lock(path, timeout, || conn.execute_batch(&sql))?;
    if let Err(e) = conn.execute_batch(&format!("USE {alias}")) {
        // Never left attached (and locked) by a failure: the USE error is the one to report.
        let _ = detach(conn, alias);
        return Err(e.into());
    }
    Ok(())
}

/// Detaches `alias` (the in-memory database becomes the default again); the file's lock goes
/// with it.
fn detach(conn: &Connection, alias: &str) -> duckdb::Result<()> {
    conn.execute_batch(&format!("USE memory; DETACH {alias};"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_file_is_free_for_others_and_taken_back_on_the_next_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.duckdb");
        let mut db = Db::open(&path, Duration::from_secs(1)).unwrap();
        db.conn_mut()
            .unwrap()
            .execute_batch("CREATE TABLE t AS SELECT 1 AS n")
            .unwrap();
        // Spills go beside the file, not into the working directory.
        let spill: String = db
            .conn()
            .unwrap()
            .query_row("SELECT current_setting('temp_directory')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(spill, format!("{}.tmp", path.display()));
        db.release();
        assert!(!db.is_open());
        // Another instance (as another process would) can write the file meanwhile.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        drop(other);
        let n: i64 = db
            .conn()
            .unwrap()
            .query_row("SELECT sum(n) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
        assert!(db.is_open());
        assert_eq!(
            db.applied_migrations().unwrap().len(),
            migrations::MIGRATIONS.len()
        );
    }
}
