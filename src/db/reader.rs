//! `Reader`: queries over many database files through one DuckDB instance, for the test suite
//! and tools that read data directories they did not write (the CLI's read-write `Db` attaches
//! its one file the same way, to an instance of its own).
//!
//! Why: a new DuckDB instance builds its catalog of built-in functions and its SQL grammar
//! anew, ~30 ms of CPU here; attaching a file to an instance that exists costs ~7 ms. The CLI
//! tests read a data directory back after most commands they run (docs/benchmarks.md, "CI wall
//! times").

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use duckdb::{AccessMode, Connection};

use crate::db::{attach, base_config, detach, ReadOnlyDb};
use crate::table::Table;

/// One in-memory DuckDB instance; each query attaches its file read-only on a connection of
/// its own and detaches it again, so threads may query different files at once.
pub struct Reader {
    instance: Mutex<Connection>,
    next_alias: AtomicU64,
    lock_timeout: Duration,
}

impl Reader {
    /// A reader that waits up to `lock_timeout` while another process writes a file.
    pub fn new(lock_timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            instance: Mutex::new(Connection::open_in_memory_with_flags(base_config()?)?),
            next_alias: AtomicU64::new(0),
            lock_timeout,
        })
    }

    /// Runs one query (checked and converted as `query sql` does: [`ReadOnlyDb::query`]) on the
    /// database file at `path`, attached read-only for the query's duration.
    pub fn query(&self, path: &Path, sql: &str) -> anyhow::Result<Table> {
        let conn = self
            .instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_clone()?;
        let alias = format!(
            "attached_{}",
            self.next_alias.fetch_add(1, Ordering::Relaxed)
        );
        attach(&conn, path, &alias, AccessMode::ReadOnly, self.lock_timeout)?;
        let db = ReadOnlyDb { conn };
        let table = db.query(sql, None);
        // Detached on every outcome once attached: the file's lock goes with it.
        let detached = detach(&db.conn, &alias);
        let table = table?;
        detached?;
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn reads_files_as_query_sql_does_and_lets_go_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("it's.duckdb");
        let mut db = Db::open(&path, Duration::from_secs(1)).unwrap();
        db.conn_mut()
            .unwrap()
            .execute_batch("CREATE TABLE t AS SELECT 1 AS n")
            .unwrap();
        drop(db);
        let reader = Reader::new(Duration::from_secs(1)).unwrap();
        let t = reader.query(&path, "SELECT n, 'x' AS s FROM t").unwrap();
        assert_eq!(t.columns, ["n", "s"]);
        assert_eq!(t.rows, [vec![serde_json::json!(1), serde_json::json!("x")]]);
        // The read-only checks of `query sql` hold, and nothing stays attached (a file attached
        // here would stay locked against other processes' writes).
        assert!(reader.query(&path, "DELETE FROM t").is_err());
        let attached: i64 = reader
            .instance
            .lock()
            .unwrap()
            .query_row(
                "SELECT count(*) FROM duckdb_databases() WHERE database_name LIKE 'attached_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(attached, 0);
        assert_eq!(
            reader.query(&path, "SELECT n FROM t").unwrap().rows.len(),
            1
        );
    }
}
