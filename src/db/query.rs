//! User SQL on the read-only connection, returned as a typed table.

use std::panic::{catch_unwind, AssertUnwindSafe};

use duckdb::arrow::datatypes::DataType;

use crate::db::{value, ReadOnlyDb};
use crate::error::{user, UserError};
use crate::table::Table;

impl ReadOnlyDb {
    /// Runs one statement and returns at most `limit` rows. Errors (bad SQL, an attempt to
    /// write) are user errors carrying DuckDB's own message.
    pub fn query(&self, sql: &str, limit: Option<usize>) -> anyhow::Result<Table> {
        let fail = |e: duckdb::Error| {
            anyhow::Error::new(e).context(UserError(
                "query failed (queries run on a read-only connection)".into(),
            ))
        };
        self.check_read_only(sql)?;
        let mut stmt = self.conn.prepare(sql).map_err(fail)?;
        let mut rows = stmt.query([]).map_err(fail)?;
        let (columns, types) = match rows.as_ref() {
            Some(s) => (
                s.column_names(),
                (0..s.column_count()).map(|i| s.column_type(i)).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let mut table = Table {
            columns,
            rows: Vec::new(),
        };
        let types: Vec<DataType> = types;
        while limit.is_none_or(|l| table.rows.len() < l) {
            let Some(row) = rows.next().map_err(fail)? else {
                break;
            };
            let mut out = Vec::with_capacity(types.len());
            for (i, ty) in types.iter().enumerate() {
                if *ty == DataType::Null {
                    // duckdb-rs has no reader for the NULL type (e.g. `SELECT NULL AS x`).
                    out.push(serde_json::Value::Null);
                    continue;
                }
                out.push(read_cell(row, i).map_err(|e| match e {
                    CellError::Db(e) => fail(e),
                    CellError::Unsupported => user(format!(
                        "column {:?} has type {ty} which cannot be shown; CAST it to VARCHAR",
                        table.columns[i]
                    )),
                })?);
            }
            table.rows.push(out);
        }
        Ok(table)
    }

    /// Refuses anything but queries: `SET`, temporary tables, `COPY … TO`, `ATTACH`, `PRAGMA`
    /// and the like. The read-only connection already refuses writes to the database itself,
    /// but not to its own temporary catalog, settings or temp directory. DuckDB's own parser
    /// decides (`json_serialize_sql` serializes SELECT statements only: SELECT, WITH, FROM,
    /// VALUES, DESCRIBE, SHOW, SUMMARIZE); syntax errors are left to `prepare` to report.
    fn check_read_only(&self, sql: &str) -> anyhow::Result<()> {
        let verdict: (Option<String>, Option<String>) = self.conn.query_row(
            "SELECT json_extract_string(j, '$.error_type'), json_extract_string(j, '$.error_message')
             FROM (SELECT json_serialize_sql(?::VARCHAR) AS j)",
            duckdb::params![sql],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        match verdict {
            (Some(kind), message) if kind == "not implemented" => Err(user(format!(
                "query failed (queries run on a read-only connection): only queries can run \
                 here (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE); {}",
                message.unwrap_or_else(|| "this statement is not a query".into())
            ))),
            _ => Ok(()),
        }
    }

    /// Whether a table has any row (used to adapt aliases to what is stored). `table` is one
    /// of our own table names, never user input.
    pub fn has_rows(&self, table: &str) -> anyhow::Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        Ok(self.conn.query_row(&sql, [], |r| r.get(0))?)
    }
}

enum CellError {
    Db(duckdb::Error),
    Unsupported,
}

/// duckdb-rs panics on Arrow types it has no reader for; user SQL can produce any type, so
/// such a panic is turned into an error instead of crashing (with the panic message silenced).
fn read_cell(row: &duckdb::Row<'_>, i: usize) -> Result<serde_json::Value, CellError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let got = catch_unwind(AssertUnwindSafe(|| row.get::<_, duckdb::types::Value>(i)));
    std::panic::set_hook(hook);
    match got {
        Ok(Ok(v)) => Ok(value::to_json(v)),
        Ok(Err(e)) => Err(CellError::Db(e)),
        Err(_) => Err(CellError::Unsupported),
    }
}
