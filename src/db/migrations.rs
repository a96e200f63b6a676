//! Schema migrations: `migrations/NNNN_name.sql`, embedded, applied in order on every open and
//! recorded in `schema_migrations`. Shipped migrations are never edited; add a new file instead.

use duckdb::Connection;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// One entry of [`MIGRATIONS`]: `migrations/<prefix>_<name>.sql`, embedded in the binary; the
/// version is the file's numeric prefix.
macro_rules! migration {
    ($prefix:literal, $name:literal) => {
        Migration {
            version: version_of($prefix),
            name: $name,
            sql: include_str!(concat!("../../migrations/", $prefix, "_", $name, ".sql")),
        }
    };
}

/// `"0007"` → 7, at compile time (a prefix that is not all digits does not compile).
const fn version_of(prefix: &str) -> u32 {
    let digits = prefix.as_bytes();
    let mut version = 0;
    let mut i = 0;
    while i < digits.len() {
        assert!(
            digits[i].is_ascii_digit(),
            "a migration file begins with its version"
        );
        version = version * 10 + (digits[i] - b'0') as u32;
        i += 1;
    }
    version
}

pub const MIGRATIONS: &[Migration] = &[
    migration!("0001", "initial"),
    migration!("0002", "collect"),
    migration!("0003", "batch"),
    migration!("0004", "label_quality"),
    migration!("0005", "recommendations"),
    migration!("0006", "batch_queue"),
    migration!("0007", "issue_text_chars"),
];

/// Applies every migration not yet recorded; returns how many ran. Each runs in its own
/// transaction together with its `schema_migrations` row, so a crash never half-applies one.
pub fn apply(conn: &Connection) -> anyhow::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       VARCHAR NOT NULL,
            applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        )",
    )?;
    let done = versions(conn)?;
    // Checked before anything runs: a newer binary's database is never touched.
    refuse_newer(&done)?;
    let mut ran = 0;
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(m.sql)
            .map_err(|e| anyhow::anyhow!("migration {:04}_{} failed: {e}", m.version, m.name))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
            duckdb::params![m.version, m.name],
        )?;
        tx.commit()?;
        ran += 1;
    }
    Ok(ran)
}

/// A database written by a newer github-analysis (a schema version this binary does not know)
/// is refused: its tables may mean something this binary would misread or overwrite.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database was written by a newer github-analysis (schema version {found}; this one \
     knows versions up to {known}): upgrade github-analysis, or use another --data-dir"
)]
pub struct NewerSchema {
    pub found: u32,
    pub known: u32,
}

pub fn refuse_newer(applied: &[u32]) -> Result<(), NewerSchema> {
    match applied.iter().max().filter(|v| **v > latest()) {
        Some(found) => Err(NewerSchema {
            found: *found,
            known: latest(),
        }),
        None => Ok(()),
    }
}

/// Versions recorded in `schema_migrations`; none when the table does not exist yet (a new or a
/// read-only database that was never migrated).
pub fn applied(conn: &Connection) -> anyhow::Result<Vec<u32>> {
    // Read first, look in the catalog only when that fails: every command opens the database,
    // and a catalog lookup (`information_schema.tables`, even `duckdb_tables()`) cost 20–30 ms
    // per open, a fifth of the test suite's time in the CLI.
    match versions(conn) {
        Ok(v) => Ok(v),
        Err(e) => {
            let exists: i64 = conn.query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations'",
                [],
                |r| r.get(0),
            )?;
            if exists == 0 {
                Ok(Vec::new())
            } else {
                Err(e)
            }
        }
    }
}

fn versions(conn: &Connection) -> anyhow::Result<Vec<u32>> {
    let mut stmt = conn.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
    let rows = stmt.query_map([], |r| r.get::<_, u32>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn latest() -> u32 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applying_twice_is_a_no_op() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&conn).unwrap(), MIGRATIONS.len());
        assert_eq!(apply(&conn).unwrap(), 0);
        assert_eq!(applied(&conn).unwrap().len(), MIGRATIONS.len());
    }

    #[test]
    fn a_database_never_migrated_has_no_versions_and_a_broken_table_is_an_error() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(applied(&conn).unwrap(), Vec::<u32>::new());
        // A table of that name without the column is not "never migrated".
        conn.execute_batch("CREATE TABLE schema_migrations (x INTEGER)")
            .unwrap();
        assert!(applied(&conn).is_err());
    }

    #[test]
    fn a_newer_schema_is_refused_before_anything_runs() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn).unwrap();
        let future = latest() + 1;
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, 'future')",
            [future],
        )
        .unwrap();
        let err = apply(&conn).unwrap_err();
        let e = err
            .downcast_ref::<NewerSchema>()
            .expect("a NewerSchema error");
        assert_eq!((e.found, e.known), (future, latest()));
        assert!(err.to_string().contains("upgrade github-analysis"), "{err}");
    }

    #[test]
    fn creates_every_table_of_the_design() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn).unwrap();
        for t in [
            "issues",
            "labels",
            "comments",
            "attachments",
            "ai_results",
            "ai_recommendations",
            "batch_jobs",
            "batch_items",
            "batch_parts",
            "issue_files",
            "recommendations",
            "recommendation_labels",
            "label_changes",
        ] {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                    [t],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "table {t} missing");
        }
    }

    #[test]
    fn embedded_list_matches_the_migrations_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        let embedded: Vec<(String, String)> = MIGRATIONS
            .iter()
            .map(|m| {
                (
                    format!("{:04}_{}.sql", m.version, m.name),
                    m.sql.to_string(),
                )
            })
            .collect();
        assert_eq!(files, embedded);
        // Versions are 1, 2, 3, … with no gap, so the order of application is unambiguous.
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                m.version as usize,
                i + 1,
                "migration {} out of sequence",
                m.name
            );
        }
    }
}
