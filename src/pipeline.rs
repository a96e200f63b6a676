//! `Pipeline`: a fluent selection of issues whose filters compile to ONE SQL query run by DuckDB
//! (no filtering or limiting in Rust); [`run`] then processes a [`Selection`] in real time or
//! as one batch job.
//!
//! ```text
//! let selection = Pipeline::new()
//!     .where_missing_analysis("product-labeling")
//!     .where_repo("replicatedhq", "kots")
//!     .where_state(IssueState::Open)
//!     .excluding_active_batches("product-labeling")
//!     .limit(100)
//!     .select(&read_only_db, "product-labeling")?;   // the SQL, recorded with a batch job
//! let outcome = pipeline::run(selection, plan, Mode::Batch { .. }, deps).await?;
//! ```

use crate::ai::Provider;
use crate::batch::{BatchManager, NewJob};
use crate::db::{sql_list, BatchJob, Db, IssueRef, ItemStatus, JobStatus, ReadOnlyDb, RecStatus};
use crate::env::EnvFn;
use crate::error::user;
use crate::plan::{AiConfig, Plan};
use crate::realtime::{self, Engine, RunReport};
use crate::report::Reporter;
use crate::store::{IssueState, Store};

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    MissingAnalysis(String),
    LowConfidence(String, f64),
    ResultOlderThan(String, u32),
    State(&'static str),
    Org(String),
    Repo(String, String),
    Issue(String, String, u64),
    ExcludingActiveBatches(String),
    ExcludingReviewed(String),
}

/// Where the issues come from: all stored issues, or the rows of the user's own SELECT.
#[derive(Debug, Clone, PartialEq, Default)]
enum Source {
    #[default]
    Issues,
    Custom {
        sql: String,
        key: CustomKey,
    },
}

/// How the rows of a custom query name issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomKey {
    Id,
    OrgRepoNumber,
}

#[derive(Debug, Default, Clone)]
pub struct Pipeline {
    source: Source,
    filters: Vec<Filter>,
    limit: Option<usize>,
    newest_first: Option<bool>,
}

/// How [`run`] processes a selection.
#[derive(Debug, Clone)]
pub enum Mode {
    /// One request per issue now, at most `concurrency` in flight.
    Realtime { concurrency: usize },
    /// One batch job (split into provider batches as needed), recording the configuration and
    /// the command that created it.
    Batch {
        config: AiConfig,
        source_command: String,
    },
}

/// What [`run`] did.
#[derive(Debug)]
pub enum Outcome {
    /// The selection was empty: nothing ran.
    Nothing,
    Realtime(RunReport),
    Batch(BatchJob),
}

/// What a processed selection produced, in numbers (a batch job's are those known so far).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub selected: usize,
    pub processed: usize,
    pub failed: usize,
    pub avg_confidence: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub batch_jobs: Vec<String>,
}

impl Outcome {
    pub fn summary(&self, selected: usize) -> Summary {
        let mut s = Summary {
            selected,
            ..Summary::default()
        };
        match self {
            Outcome::Nothing => {}
            Outcome::Realtime(r) => {
                s.processed = r.processed;
                s.failed = r.failed.len();
                s.avg_confidence = r.avg_confidence();
                s.prompt_tokens = r.usage.prompt_tokens;
                s.completion_tokens = r.usage.completion_tokens;
                s.cost_usd = r.cost_usd;
            }
            Outcome::Batch(j) => {
                s.processed = j.completed_count.max(0) as usize;
                s.failed = j.failed_count.max(0) as usize;
                s.cost_usd = j.cost_actual.unwrap_or(0.0);
                s.batch_jobs.push(j.job_id.clone());
            }
        }
        s
    }
}

/// What a run works with: the data directory and its database, the environment (keys, base
/// URLs, caps) and where progress and notices go.
pub struct Deps<'a> {
    pub store: &'a Store,
    pub db: &'a mut Db,
    pub env: &'a EnvFn,
    pub reporter: &'a dyn Reporter,
}

/// Processes the selected issues with the plan's processor and model: one real-time run, or
/// one batch job recording the selection's SQL as its `selection_query`.
pub async fn run(
    selection: Selection,
    plan: Plan,
    mode: Mode,
    deps: Deps<'_>,
) -> anyhow::Result<Outcome> {
    if selection.issues.is_empty() {
        return Ok(Outcome::Nothing);
    }
    match mode {
        Mode::Batch {
            config,
            source_command,
        } => {
            let model = plan.model.id();
            let mut m = BatchManager::new(deps.store, deps.db, deps.env, deps.reporter);
            let job = m
                .create_batch_job(
                    NewJob {
                        processor: plan.processor.name(),
                        model: Some(&model),
                        config,
                        selection_query: Some(selection.sql),
                        source_command,
                        parent_job_id: None,
                    },
                    selection.issues,
                )
                .await?;
            Ok(Outcome::Batch(job))
        }
        Mode::Realtime { concurrency } => {
            let endpoint = plan.endpoint(deps.env)?;
            let provider = Provider::from_plan(&plan, endpoint)?;
            let engine = Engine::new(plan, provider)?;
            let report = realtime::execute(
                engine,
                deps.store,
                deps.db,
                selection.issues,
                concurrency,
                deps.reporter,
            )
            .await?;
            Ok(Outcome::Realtime(report))
        }
    }
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues with no result of `processor`.
    pub fn where_missing_analysis(mut self, processor: &str) -> Self {
        self.filters.push(Filter::MissingAnalysis(processor.into()));
        self
    }

    /// Issues whose `processor` result has a confidence below `threshold`.
    pub fn where_low_confidence(mut self, processor: &str, threshold: f64) -> Self {
        self.filters
            .push(Filter::LowConfidence(processor.into(), threshold));
        self
    }

    /// Issues whose `processor` result is older than `days` days.
    pub fn where_older_than(mut self, processor: &str, days: u32) -> Self {
        self.filters
            .push(Filter::ResultOlderThan(processor.into(), days));
        self
    }

    pub fn where_state(mut self, state: IssueState) -> Self {
        match state {
            IssueState::Open => self.filters.push(Filter::State("open")),
            IssueState::Closed => self.filters.push(Filter::State("closed")),
            IssueState::All => {}
        }
        self
    }

    pub fn where_org(mut self, org: &str) -> Self {
        self.filters.push(Filter::Org(org.into()));
        self
    }

    pub fn where_repo(mut self, org: &str, repo: &str) -> Self {
        self.filters.push(Filter::Repo(org.into(), repo.into()));
        self
    }

    /// The narrowest of an organisation, one of its repositories, or one issue of it (a number
    /// without a repository is ignored: the command line refuses it before).
    pub fn where_scope(self, org: &str, repo: Option<&str>, number: Option<u64>) -> Self {
        match (repo, number) {
            (Some(r), Some(n)) => self.where_issue(org, r, n),
            (Some(r), None) => self.where_repo(org, r),
            (None, _) => self.where_org(org),
        }
    }

    /// One issue.
    pub fn where_issue(mut self, org: &str, repo: &str, number: u64) -> Self {
        self.filters
            .push(Filter::Issue(org.into(), repo.into(), number));
        self
    }

    /// Select from the rows of the user's SELECT (checked by [`check_custom_sql`]).
    pub fn from_custom_sql(mut self, sql: &str, key: CustomKey) -> Self {
        self.source = Source::Custom {
            sql: sql.trim().trim_end_matches(';').to_string(),
            key,
        };
        self
    }

    /// Leave out issues already in a running batch job for `processor`.
    pub fn excluding_active_batches(mut self, processor: &str) -> Self {
        self.filters
            .push(Filter::ExcludingActiveBatches(processor.into()));
        self
    }

    /// Leave out issues whose current `processor` recommendation a person decided on
    /// (approved, rejected) or that was applied.
    pub fn excluding_reviewed(mut self, processor: &str) -> Self {
        self.filters
            .push(Filter::ExcludingReviewed(processor.into()));
        self
    }

    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    pub fn order_by_created(mut self, desc: bool) -> Self {
        self.newest_first = Some(desc);
        self
    }

    /// The one SQL query that selects the issues, with every value inlined as a quoted literal
    /// so that the text recorded in `batch_jobs.selection_query` is exactly what ran.
    /// Columns: id, org, repo, number, file_path, has_result (for `processor`).
    pub fn compile(&self, processor: &str) -> String {
        let mut sql = String::new();
        let from = match &self.source {
            Source::Issues => "FROM issues i".to_string(),
            Source::Custom { sql: custom, key } => {
                sql.push_str(&format!("WITH custom AS (\n{custom}\n)\n"));
                match key {
                    CustomKey::Id => "FROM issues i\nSEMI JOIN custom c ON c.id = i.id".to_string(),
                    CustomKey::OrgRepoNumber => "FROM issues i\nSEMI JOIN custom c \
                         ON c.org = i.org AND c.repo = i.repo AND c.number = i.number"
                        .to_string(),
                }
            }
        };
        // When a filter already decides whether a result exists, say so instead of asking
        // DuckDB to join ai_results once more for every selected row.
        let has_result = if self
            .filters
            .iter()
            .any(|f| matches!(f, Filter::MissingAnalysis(p) if p == processor))
        {
            "FALSE".to_string()
        } else if self.filters.iter().any(|f| {
            matches!(f, Filter::LowConfidence(p, _) | Filter::ResultOlderThan(p, _) if p == processor)
        }) {
            "TRUE".to_string()
        } else {
            format!(
                "EXISTS (SELECT 1 FROM ai_results r WHERE r.issue_id = i.id AND r.processor = {})",
                lit(processor)
            )
        };
        sql.push_str(&format!(
            "SELECT i.id, i.org, i.repo, i.number, i.file_path,\n       {has_result} AS has_result\n{from}"
        ));
        let mut conds = Vec::new();
        for f in &self.filters {
            conds.push(match f {
                Filter::MissingAnalysis(p) => format!(
                    "NOT EXISTS (SELECT 1 FROM ai_results r WHERE r.issue_id = i.id AND r.processor = {})",
                    lit(p)
                ),
                Filter::LowConfidence(p, t) => format!(
                    "EXISTS (SELECT 1 FROM ai_results r WHERE r.issue_id = i.id AND r.processor = {} \
                     AND coalesce(r.confidence, 0) < {t})",
                    lit(p)
                ),
                Filter::ResultOlderThan(p, d) => format!(
                    "EXISTS (SELECT 1 FROM ai_results r WHERE r.issue_id = i.id AND r.processor = {} \
                     AND r.created_at < now()::TIMESTAMP - INTERVAL {d} DAY)",
                    lit(p)
                ),
                Filter::State(s) => format!("i.state = {}", lit(s)),
                // GitHub names are case-insensitive.
                Filter::Org(o) => format!("lower(i.org) = lower({})", lit(o)),
                Filter::Repo(o, r) => format!(
                    "lower(i.org) = lower({}) AND lower(i.repo) = lower({})",
                    lit(o),
                    lit(r)
                ),
                Filter::Issue(o, r, n) => format!(
                    "lower(i.org) = lower({}) AND lower(i.repo) = lower({}) AND i.number = {n}",
                    lit(o),
                    lit(r)
                ),
                Filter::ExcludingActiveBatches(p) => format!(
                    "NOT EXISTS (SELECT 1 FROM batch_items bi JOIN batch_jobs bj ON bj.job_id = bi.job_id \
                     WHERE bi.issue_id = i.id AND bj.processor = {} AND bj.status IN ({}) \
                     AND bi.status IN ({}))",
                    lit(p),
                    sql_list(JobStatus::ACTIVE, JobStatus::as_str),
                    sql_list(ItemStatus::OPEN, ItemStatus::as_str)
                ),
                Filter::ExcludingReviewed(p) => format!(
                    "NOT EXISTS (SELECT 1 FROM recommendations rc WHERE rc.issue_id = i.id \
                     AND rc.processor = {} AND rc.superseded_by IS NULL AND rc.status IN ({}))",
                    lit(p),
                    sql_list(RecStatus::REVIEWED, RecStatus::as_str)
                ),
            });
        }
        if !conds.is_empty() {
            sql.push_str("\nWHERE ");
            sql.push_str(&conds.join("\n  AND "));
        }
        sql.push_str(match self.newest_first {
            Some(true) => "\nORDER BY i.created_at DESC NULLS LAST, i.id",
            Some(false) => "\nORDER BY i.created_at ASC NULLS LAST, i.id",
            None => "\nORDER BY i.org, i.repo, i.number",
        });
        if let Some(n) = self.limit {
            sql.push_str(&format!("\nLIMIT {n}"));
        }
        sql
    }

    /// Runs the compiled query on a read-only connection.
    pub fn select(&self, db: &ReadOnlyDb, processor: &str) -> anyhow::Result<Selection> {
        let sql = self.compile(processor);
        let issues = db.select_issues(&sql)?;
        Ok(Selection { sql, issues })
    }

    /// [`Pipeline::select`] on the read-write connection that the run will use anyway: one
    /// open of the database instead of two (each builds a DuckDB instance, ~50 ms). Only for
    /// this program's own filters, whose values are all quoted literals; user SQL
    /// ([`Pipeline::from_custom_sql`]) runs read-only, so such a pipeline is refused here.
    pub fn select_rw(&self, db: &Db, processor: &str) -> anyhow::Result<Selection> {
        if let Source::Custom { .. } = self.source {
            anyhow::bail!("a selection by user SQL runs on a read-only connection");
        }
        let sql = self.compile(processor);
        let issues = db.select_compiled(&sql)?;
        Ok(Selection { sql, issues })
    }
}

/// A SQL string literal: single quotes doubled. Every value enters the query through here.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The issues a pipeline selected and the SQL that selected them.
#[derive(Debug, Clone)]
pub struct Selection {
    pub sql: String,
    pub issues: Vec<IssueRef>,
}

impl Selection {
    pub fn len(&self) -> usize {
        self.issues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Checks that the user's custom SQL is one read-only SELECT returning issue rows, and says how
/// its rows name issues. Anything else is refused with a message saying what is expected.
pub fn check_custom_sql(db: &ReadOnlyDb, sql: &str) -> anyhow::Result<CustomKey> {
    let body = sql.trim().trim_end_matches(';').trim();
    if body.is_empty() {
        return Err(user("the custom SQL is empty"));
    }
    let columns = db.result_columns(body).map_err(|e| {
        e.context(crate::error::UserError(
            "custom SQL must be one SELECT returning issue rows (an `id` column, or `org, repo, number`)"
                .into(),
        ))
    })?;
    let has = |c: &str| columns.iter().any(|x| x == c);
    if has("id") {
        Ok(CustomKey::Id)
    } else if has("org") && has("repo") && has("number") {
        Ok(CustomKey::OrgRepoNumber)
    } else {
        Err(user(format!(
            "custom SQL must return issue rows: an `id` column, or `org, repo, number`; it returns ({})",
            columns.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_into_one_query_with_quoted_values() {
        let sql = Pipeline::new()
            .where_missing_analysis("product-labeling")
            .where_repo("o'rg", "kots")
            .where_state(IssueState::Open)
            .excluding_active_batches("product-labeling")
            .order_by_created(true)
            .limit(5)
            .compile("product-labeling");
        assert!(sql.contains("lower(i.org) = lower('o''rg')"), "{sql}");
        assert!(sql.contains("i.state = 'open'"));
        assert!(sql.contains("NOT EXISTS (SELECT 1 FROM ai_results"));
        assert!(sql.contains("bj.status IN ('preparing'"));
        assert!(sql.contains("bi.status IN ('preparing', 'pending')"));
        assert!(sql.ends_with("ORDER BY i.created_at DESC NULLS LAST, i.id\nLIMIT 5"));
        assert_eq!(sql.matches("SELECT i.id").count(), 1);
    }

    #[test]
    fn state_all_adds_no_filter_and_custom_sql_is_a_cte() {
        let sql = Pipeline::new()
            .from_custom_sql("SELECT * FROM issues WHERE state='closed';", CustomKey::Id)
            .where_state(IssueState::All)
            .compile("p");
        assert!(sql.starts_with("WITH custom AS (\nSELECT * FROM issues WHERE state='closed'\n)"));
        assert!(!sql.contains("i.state ="));
        assert!(sql.contains("SEMI JOIN custom c ON c.id = i.id"));
    }

    #[test]
    fn user_sql_never_runs_on_the_read_write_connection() {
        let db = Db::open_in_memory().unwrap();
        let custom = Pipeline::new().from_custom_sql("SELECT id FROM issues", CustomKey::Id);
        assert!(custom.select_rw(&db, "p").is_err());
        let own = Pipeline::new()
            .where_org("acme")
            .where_state(IssueState::Open);
        assert!(own.select_rw(&db, "p").unwrap().issues.is_empty());
    }
}
