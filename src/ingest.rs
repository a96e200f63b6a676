//! Keeps DuckDB in step with the JSON issue files: plans by stat, confirms by content hash,
//! parses changed files in parallel and loads them in bulk.

use std::collections::{HashMap, HashSet};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::db::{Db, FileRecord, LoadedIssue};
use crate::store::{parse_issue, Store};

/// Files parsed and loaded per transaction: bounds memory on very large stores.
const CHUNK: usize = 5_000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub scanned: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// (relative path, reason) of files that could not be loaded.
    pub failed: Vec<(String, String)>,
}

/// What differs between the files on disk and the database's ledger, judged by stat only.
#[derive(Debug, Default)]
pub struct Plan {
    pub on_disk: usize,
    /// Total size of the issue files on disk.
    pub bytes: u64,
    /// Files never loaded, or whose size/mtime changed since.
    pub candidates: Vec<(String, Stat)>,
    /// Ledger entries whose file is gone.
    pub missing: Vec<FileRecord>,
    records: HashMap<String, FileRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub size: i64,
    pub mtime_ns: i64,
}

impl Plan {
    pub fn in_sync(&self) -> bool {
        self.candidates.is_empty() && self.missing.is_empty()
    }
}

fn stat(path: &std::path::Path) -> std::io::Result<Stat> {
    let md = std::fs::metadata(path)?;
    let mtime_ns = md
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Ok(Stat {
        size: i64::try_from(md.len()).unwrap_or(i64::MAX),
        mtime_ns,
    })
}

/// Compares every issue file with the ledger. `force` makes every file a candidate.
pub fn plan(store: &Store, db: &Db, force: bool) -> anyhow::Result<Plan> {
    let records = db.file_records()?;
    let files = store.list_issue_files()?;
    let on_disk: HashSet<&str> = files.iter().map(String::as_str).collect();
    let missing = records
        .values()
        .filter(|r| !on_disk.contains(r.file_path.as_str()))
        .cloned()
        .collect();
    let mut candidates = Vec::new();
    let mut bytes = 0u64;
    for rel in &files {
        // A file that vanished between listing and stat is picked up as missing next time.
        let Ok(st) = stat(&store.abs(rel)) else {
            continue;
        };
        bytes += st.size.max(0) as u64;
        let unchanged = records
            .get(rel)
            .is_some_and(|r| r.size == st.size && r.mtime_ns == st.mtime_ns);
        if force || !unchanged {
            candidates.push((rel.clone(), st));
        }
    }
    Ok(Plan {
        on_disk: files.len(),
        bytes,
        candidates,
        missing,
        records,
    })
}

/// Full sync of the store: loads new and changed files, drops issues whose file is gone.
pub fn sync(
    store: &Store,
    db: &mut Db,
    force: bool,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<SyncReport> {
    let plan = plan(store, db, force)?;
    let mut report = SyncReport {
        scanned: plan.on_disk,
        unchanged: plan.on_disk - plan.candidates.len(),
        ..SyncReport::default()
    };
    db.remove_files(&plan.missing)?;
    report.removed = plan.missing.len();
    load(
        store,
        db,
        plan.candidates,
        &plan.records,
        force,
        &mut report,
        progress,
    )?;
    Ok(report)
}

/// Loads just these files (e.g. the ones `import` wrote), whatever the ledger says.
pub fn sync_paths(
    store: &Store,
    db: &mut Db,
    paths: &[String],
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<SyncReport> {
    let records = db.file_records()?;
    let mut report = SyncReport {
        scanned: paths.len(),
        ..SyncReport::default()
    };
    let mut candidates = Vec::with_capacity(paths.len());
    let mut seen = HashSet::with_capacity(paths.len());
    for rel in paths.iter().filter(|p| seen.insert(p.as_str())) {
        match stat(&store.abs(rel)) {
            Ok(st) => candidates.push((rel.clone(), st)),
            Err(e) => report.failed.push((rel.clone(), e.to_string())),
        }
    }
    load(store, db, candidates, &records, true, &mut report, progress)?;
    Ok(report)
}

enum Outcome {
    Load(Box<LoadedIssue>),
    SameContent(FileRecord),
    Failed(String, String),
}

fn load(
    store: &Store,
    db: &mut Db,
    candidates: Vec<(String, Stat)>,
    records: &HashMap<String, FileRecord>,
    force: bool,
    report: &mut SyncReport,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    progress.set_length(candidates.len() as u64);
    // Which file holds which issue, so two files claiming one issue are caught.
    let mut owner: HashMap<String, String> = records
        .values()
        .map(|r| (r.issue_id.clone(), r.file_path.clone()))
        .collect();
    for chunk in candidates.chunks(CHUNK) {
        let outcomes = read_parallel(store, chunk, records, force);
        let mut batch = Vec::with_capacity(outcomes.len());
        let mut touched = Vec::new();
        for o in outcomes {
            match o {
                Outcome::Load(l) => {
                    let key = l.file.issue_id.clone();
                    match owner.get(&key) {
                        Some(other) if *other != l.file.file_path && store.abs(other).exists() => {
                            report.failed.push((
                                l.file.file_path.clone(),
                                format!("issue {key} is already loaded from {other}"),
                            ));
                            continue;
                        }
                        _ => {}
                    }
                    owner.insert(key, l.file.file_path.clone());
                    if records.contains_key(&l.file.file_path) {
                        report.updated += 1;
                    } else {
                        report.added += 1;
                    }
                    batch.push(*l);
                }
                Outcome::SameContent(r) => {
                    report.unchanged += 1;
                    touched.push(r);
                }
                Outcome::Failed(p, why) => report.failed.push((p, why)),
            }
        }
        let before = report.failed.len();
        load_isolating(db, batch, &mut report.failed)?;
        for (path, _) in &report.failed[before..] {
            if records.contains_key(path) {
                report.updated -= 1;
            } else {
                report.added -= 1;
            }
        }
        db.touch_files(&touched)?;
        progress.inc(chunk.len() as u64);
    }
    Ok(())
}

/// Loads a batch in one transaction; if the database refuses it, loads its issues one by one,
/// so one issue the database cannot take fails alone (recorded in `failed`) instead of
/// failing the batch and every later sync.
pub fn load_isolating(
    db: &mut Db,
    batch: Vec<LoadedIssue>,
    failed: &mut Vec<(String, String)>,
) -> anyhow::Result<usize> {
    if batch.is_empty() || db.replace_issues(&batch).is_ok() {
        return Ok(batch.len());
    }
    let mut loaded = 0;
    for one in batch {
        match db.replace_issues(std::slice::from_ref(&one)) {
            Ok(()) => loaded += 1,
            Err(e) => failed.push((
                one.file.file_path.clone(),
                format!("the database refused it: {e:#}"),
            )),
        }
    }
    Ok(loaded)
}

/// Reads, hashes and parses files on every core; I/O and JSON parsing dominate sync time.
fn read_parallel(
    store: &Store,
    chunk: &[(String, Stat)],
    records: &HashMap<String, FileRecord>,
    force: bool,
) -> Vec<Outcome> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(chunk.len().max(1));
    let per = chunk.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = chunk
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(rel, st)| read_one(store, rel, *st, records.get(rel), force))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Outcome::Failed(
                        String::new(),
                        "reader thread panicked".into(),
                    )]
                })
            })
            .collect()
    })
}

fn read_one(store: &Store, rel: &str, st: Stat, prev: Option<&FileRecord>, force: bool) -> Outcome {
    let path = store.abs(rel);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(rel.to_string(), format!("cannot read: {e}")),
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(prev) = prev.filter(|p| !force && p.sha256 == sha256) {
        return Outcome::SameContent(FileRecord {
            size: st.size,
            mtime_ns: st.mtime_ns,
            ..prev.clone()
        });
    }
    match parse_issue(std::path::Path::new(rel), &bytes) {
        Ok(issue) => Outcome::Load(Box::new(LoadedIssue {
            file: FileRecord {
                file_path: rel.to_string(),
                issue_id: issue.key(),
                size: st.size,
                mtime_ns: st.mtime_ns,
                sha256,
            },
            issue,
        })),
        Err(e) => {
            // parse_issue already names the path; keep only the reason here.
            let msg = e.to_string();
            let reason = msg
                .strip_prefix(&format!("{rel}: "))
                .unwrap_or(&msg)
                .to_string();
            Outcome::Failed(rel.to_string(), reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredIssue;

    fn loaded(n: u64) -> LoadedIssue {
        LoadedIssue::fixture(StoredIssue::new("o", "r", n, "t"))
    }

    #[test]
    fn an_issue_the_database_refuses_fails_alone() {
        let mut db = Db::open_in_memory().unwrap();
        // Bypasses the range check on purpose: the database itself refuses this number.
        let batch = vec![loaded(1), loaded(u64::MAX), loaded(3)];
        let mut failed = Vec::new();
        assert_eq!(load_isolating(&mut db, batch, &mut failed).unwrap(), 2);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, format!("issues/o_r_issue_{}.json", u64::MAX));
        assert!(
            failed[0].1.contains("the database refused it"),
            "{failed:?}"
        );
        assert_eq!(db.file_records().unwrap().len(), 2);
    }
}
