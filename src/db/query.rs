//! User SQL on the read-only connection, returned as a typed table.

use crate::db::{value, ReadOnlyDb};
use crate::error::UserError;
use crate::printer::Table;

impl ReadOnlyDb {
    /// Runs one statement and returns at most `limit` rows. Errors (bad SQL, an attempt to
    /// write) are user errors carrying DuckDB's own message.
    pub fn query(&self, sql: &str, limit: Option<usize>) -> anyhow::Result<Table> {
        let fail = |e: duckdb::Error| {
            anyhow::Error::new(e).context(UserError(
                "query failed (queries run on a read-only connection)".into(),
            ))
        };
        let mut stmt = self.conn.prepare(sql).map_err(fail)?;
        let mut rows = stmt.query([]).map_err(fail)?;
        let columns = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
        let mut table = Table {
            columns,
            rows: Vec::new(),
        };
        let width = table.columns.len();
        while limit.is_none_or(|l| table.rows.len() < l) {
            let Some(row) = rows.next().map_err(fail)? else {
                break;
            };
            let mut out = Vec::with_capacity(width);
            for i in 0..width {
                let v: duckdb::types::Value = row.get(i).map_err(fail)?;
                out.push(value::to_json(v));
            }
            table.rows.push(out);
        }
        Ok(table)
    }

    /// Whether any row exists for a query (used to adapt aliases to what is stored).
    pub fn has_rows(&self, table: &str) -> anyhow::Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        Ok(self.conn.query_row(&sql, [], |r| r.get(0))?)
    }
}
