//! The streaming import: items are split from each source ([`super::split`]) into chunks;
//! each chunk is converted and serialized on every core, checked for duplicates and file-name
//! collisions, written (files whose content did not change are left alone), made durable with
//! one flush, and bulk-loaded into DuckDB the way `sync` loads files. Memory is bounded by a
//! chunk, not by the file.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::BufRead;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::db::{Db, FileRecord, LoadedIssue};
use crate::import_files::split::Splitter;
use crate::import_files::{convert, values_of, Item};
use crate::ingest::load_isolating;
use crate::store::{collision, issue_key_of, make_durable, parse_issue, write_unsynced, Store};

/// Items per chunk, and raw bytes per chunk (whichever is reached first): a few MB of issues
/// in flight keeps memory flat and still gives every core enough work.
const CHUNK_ITEMS: usize = 2_000;
const CHUNK_BYTES: usize = 8 << 20;

/// A named byte stream to import (a file, or a sample embedded in the binary).
pub struct Source {
    pub name: String,
    pub reader: anyhow::Result<Box<dyn BufRead + Send>>,
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub sources: usize,
    /// Distinct issues read (an issue listed twice counts once; the last copy is kept).
    pub issues: usize,
    /// Issue files written and loaded.
    pub written: usize,
    /// Issues whose file already held the same content.
    pub unchanged: usize,
    pub pull_requests: usize,
    /// `source: item N: reason` of every item (or source) not stored.
    pub failures: Vec<String>,
}

/// Imports every source; a source that cannot be read, or an item that cannot be converted,
/// written or loaded, is reported and the rest still import.
pub fn import(
    store: &Store,
    db: &mut Db,
    sources: Vec<Source>,
    fallback: Option<(&str, &str)>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<ImportReport> {
    let mut run = Run {
        store,
        ledger: db
            .file_records()?
            .into_values()
            .map(|r| (r.file_path, r.sha256))
            .collect(),
        seen: HashSet::new(),
        report: ImportReport {
            sources: sources.len(),
            ..ImportReport::default()
        },
        fallback,
    };
    for source in sources {
        let reader = match source.reader {
            Ok(r) => r,
            Err(e) => {
                run.report.failures.push(format!("{}: {e:#}", source.name));
                continue;
            }
        };
        let mut split = Splitter::new(reader);
        let mut item_no = 0usize;
        loop {
            let mut raws = Vec::new();
            let mut bytes = 0;
            let mut stop = None;
            while raws.len() < CHUNK_ITEMS && bytes < CHUNK_BYTES {
                match split.next_item() {
                    Ok(Some(raw)) => {
                        bytes += raw.len();
                        raws.push(raw);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        stop = Some(e);
                        break;
                    }
                }
            }
            let last = raws.len() < CHUNK_ITEMS && bytes < CHUNK_BYTES;
            if !raws.is_empty() {
                run.chunk(db, &source.name, raws, &mut item_no)?;
            }
            progress.inc(bytes as u64);
            if let Some(e) = stop {
                run.report.failures.push(format!(
                    "{}: {e}; the {item_no} item(s) before it were read",
                    source.name
                ));
                break;
            }
            if last {
                break;
            }
        }
    }
    Ok(run.report)
}

struct Run<'a> {
    store: &'a Store,
    /// The database's ledger (path → content hash), to load unchanged files it lacks.
    ledger: HashMap<String, String>,
    /// Hashes of the issue keys read so far (8 bytes per issue), for the distinct count.
    seen: HashSet<u64>,
    report: ImportReport,
    fallback: Option<(&'a str, &'a str)>,
}

/// One converted issue, serialized, with its file name.
struct Prepared {
    item: String,
    key: String,
    rel: String,
    bytes: Vec<u8>,
    issue: crate::store::StoredIssue,
}

enum Converted {
    Issue(Box<Prepared>),
    PullRequest,
    Failed(String),
}

/// What writing one issue came to.
enum Written {
    Load(Box<LoadedIssue>),
    Unchanged(Option<Box<LoadedIssue>>),
    Failed(String),
}

impl Run<'_> {
    fn chunk(
        &mut self,
        db: &mut Db,
        name: &str,
        raws: Vec<Vec<u8>>,
        item_no: &mut usize,
    ) -> anyhow::Result<()> {
        let fallback = self.fallback;
        let converted: Vec<Vec<Result<Item, String>>> =
            parallel(raws, |raw| match values_of(&raw) {
                Ok(values) => values
                    .into_iter()
                    .map(|v| Ok(convert(v, fallback)))
                    .collect(),
                Err(why) => vec![Err(why)],
            });
        // Number the items in file order, then serialize on every core.
        let mut numbered = Vec::new();
        for items in converted {
            for item in items {
                *item_no += 1;
                numbered.push((format!("{name}: item {item_no}"), item));
            }
        }
        let prepared = parallel(numbered, |(label, item)| prepare(label, item));

        // Duplicates keep their last copy; a file name claimed by two issues keeps the first.
        let mut by_key: HashMap<String, usize> = HashMap::new();
        let mut by_rel: HashMap<String, String> = HashMap::new();
        let mut keep: Vec<Option<Prepared>> = Vec::with_capacity(prepared.len());
        for c in prepared {
            match c {
                Converted::PullRequest => self.report.pull_requests += 1,
                Converted::Failed(why) => self.report.failures.push(why),
                Converted::Issue(p) => {
                    let p = *p;
                    match by_rel.get(&p.rel) {
                        Some(holder) if *holder != p.key => {
                            let e = collision(&p.rel, holder, &p.key);
                            self.report.failures.push(format!("{}: {e}", p.item));
                            continue;
                        }
                        _ => {}
                    }
                    by_rel.insert(p.rel.clone(), p.key.clone());
                    if self.seen.insert(hash(&p.key)) {
                        self.report.issues += 1;
                    }
                    if let Some(i) = by_key.insert(p.key.clone(), keep.len()) {
                        if let Some(slot) = keep.get_mut(i) {
                            *slot = None;
                        }
                    }
                    keep.push(Some(p));
                }
            }
        }

        let store = self.store;
        let ledger = &self.ledger;
        let results = parallel(keep.into_iter().flatten().collect(), |p| {
            write_one(store, ledger, p)
        });
        let mut loaded = Vec::new();
        let mut fresh = Vec::new();
        for r in results {
            match r {
                Written::Load(l) => {
                    fresh.push(store.abs(&l.file.file_path));
                    loaded.push(*l);
                }
                Written::Unchanged(l) => {
                    self.report.unchanged += 1;
                    loaded.extend(l.map(|l| *l));
                }
                Written::Failed(why) => self.report.failures.push(why),
            }
        }
        // Durable before the rows commit: a row never points at a file a crash could lose.
        make_durable(&store.issues_dir(), &fresh)?;
        let written: HashSet<String> = fresh
            .iter()
            .filter_map(|p| p.strip_prefix(store.root()).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut failed = Vec::new();
        load_isolating(db, loaded, &mut failed)?;
        let failed_written = failed.iter().filter(|(p, _)| written.contains(p)).count();
        self.report.written += written.len() - failed_written;
        self.report
            .failures
            .extend(failed.into_iter().map(|(p, why)| format!("{p}: {why}")));
        Ok(())
    }
}

fn prepare(label: String, item: Result<Item, String>) -> Converted {
    let issue = match item {
        Ok(Item::Issue(s)) => *s,
        Ok(Item::PullRequest) => return Converted::PullRequest,
        Ok(Item::Invalid(why)) | Err(why) => return Converted::Failed(format!("{label}: {why}")),
    };
    let rel = match Store::issue_rel_path(&issue.org, &issue.repo, issue.issue.number) {
        Ok(r) => r,
        Err(e) => return Converted::Failed(format!("{label}: {e}")),
    };
    match serde_json::to_vec_pretty(&issue) {
        Ok(bytes) => Converted::Issue(Box::new(Prepared {
            item: label,
            key: issue.key(),
            rel,
            bytes,
            issue,
        })),
        Err(e) => Converted::Failed(format!("{label}: cannot serialize: {e}")),
    }
}

/// Writes one issue file unless it already holds this issue's content; never overwrites a
/// file holding another issue.
fn write_one(store: &Store, ledger: &HashMap<String, String>, p: Prepared) -> Written {
    let abs = store.abs(&p.rel);
    if let Ok(old) = std::fs::read(&abs) {
        if let Some(holder) = issue_key_of(&old).filter(|k| *k != p.key) {
            return Written::Failed(format!(
                "{}: {}",
                p.item,
                collision(&p.rel, &holder, &p.key)
            ));
        }
        let same = parse_issue(&abs, &old).is_ok_and(|o| {
            o.org == p.issue.org && o.repo == p.issue.repo && o.issue == p.issue.issue
        });
        if same {
            // Written by an import that stopped before loading it: load it now.
            let sha = hex::encode(Sha256::digest(&old));
            if ledger.get(&p.rel) == Some(&sha) {
                return Written::Unchanged(None);
            }
            return match record(&abs, &p.rel, &p.key, sha) {
                Ok(file) => Written::Unchanged(Some(Box::new(LoadedIssue {
                    file,
                    issue: p.issue,
                }))),
                Err(e) => Written::Failed(format!("{}: {e}", p.rel)),
            };
        }
    }
    if let Err(e) = write_unsynced(&abs, &p.bytes) {
        return Written::Failed(format!("{}: {e:#}", p.item));
    }
    let sha = hex::encode(Sha256::digest(&p.bytes));
    match record(&abs, &p.rel, &p.key, sha) {
        Ok(file) => Written::Load(Box::new(LoadedIssue {
            file,
            issue: p.issue,
        })),
        Err(e) => Written::Failed(format!("{}: {e}", p.rel)),
    }
}

/// The ledger entry of a file just written or checked (stat as `sync` records it).
fn record(
    abs: &std::path::Path,
    rel: &str,
    key: &str,
    sha256: String,
) -> std::io::Result<FileRecord> {
    let md = std::fs::metadata(abs)?;
    let mtime_ns = md
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Ok(FileRecord {
        file_path: rel.to_string(),
        issue_id: key.to_string(),
        size: i64::try_from(md.len()).unwrap_or(i64::MAX),
        mtime_ns,
        sha256,
    })
}

fn hash(key: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Maps `items` on every core, keeping their order.
fn parallel<T: Send, U: Send>(items: Vec<T>, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| s.spawn(move || part.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
