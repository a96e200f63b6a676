//! Every clap type of the command line, and nothing else: no logic lives here.
//!
//! The tree mirrors the original Python tool's command tree (see docs/architecture.md).

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use crate::env;
pub use crate::printer::OutputFormat;
pub use crate::store::IssueState;

/// `--format` values, parsed into the printer's [`OutputFormat`].
fn format_parser() -> impl TypedValueParser<Value = OutputFormat> {
    PossibleValuesParser::new([
        PossibleValue::new("table").help("Human-readable tables"),
        PossibleValue::new("json").help("JSON: lists are arrays of objects with typed values"),
        PossibleValue::new("csv").help("RFC 4180 CSV with a header row"),
    ])
    .try_map(|s| s.parse::<OutputFormat>())
}

/// A number of seconds from 0 to a day: anything else (negative, NaN, `1e300`) is a usage error.
fn seconds(s: &str) -> Result<f64, String> {
    bounded(s, 86_400.0, "number of seconds", " seconds")
}

/// A finite number in `[0, max]`.
fn bounded(s: &str, max: f64, what: &str, unit: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a {what}"))?;
    if v.is_finite() && (0.0..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s}: must be between 0 and {max}{unit}"))
    }
}

/// `--state` values, parsed into the store's [`IssueState`].
fn state_parser() -> impl TypedValueParser<Value = IssueState> {
    PossibleValuesParser::new(IssueState::NAMES).try_map(|s| s.parse::<IssueState>())
}

/// Triage GitHub issues with AI: collect issues into JSON files and DuckDB, select them with SQL,
/// and run AI processors over them in real time or through provider batch APIs.
#[derive(Debug, Parser)]
#[command(name = "github-analysis", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Data directory holding issues/, results/, batch/ and issues.duckdb.
    #[arg(long, global = true, env = env::DATA_DIR, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Output format of everything written to stdout.
    #[arg(long, global = true, value_parser = format_parser(), default_value = "table")]
    pub format: OutputFormat,

    /// Seconds to wait for another process holding the database before giving up.
    #[arg(long, global = true, env = env::LOCK_TIMEOUT, value_name = "SECONDS", value_parser = seconds)]
    pub lock_timeout: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch issues, comments and labels from GitHub into the JSON store and DuckDB.
    Collect(CollectArgs),
    /// Import GitHub REST issue JSON (array, object or JSONL, e.g. `gh api --paginate` output).
    Import(ImportArgs),
    /// Bring DuckDB in step with the JSON files.
    Sync(SyncArgs),
    /// Show what is stored: JSON files, database counts, per-repository breakdown.
    Status,
    /// Run SQL over the database (read-only).
    #[command(subcommand)]
    Query(QueryCommand),
    /// Run an AI processor in real time over issues.
    #[command(subcommand)]
    Process(ProcessCommand),
    /// Batch jobs through provider batch APIs.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// SQL-selected processing pipelines, real-time or batch.
    #[command(subcommand)]
    ProcessQuery(ProcessQueryCommand),
    /// The whole flow on the bundled sample issues, offline: import, a taxonomy from the
    /// sample's labels, train `local` on the older issues, label the newer ones in batch mode,
    /// evaluate against the human labels (HTML report), then batch status and analytics.
    Demo(DemoArgs),
    /// Print a shell completion script, or the man page (`completions man`), on stdout.
    Completions(CompletionsArgs),
    /// The models the tool knows a price for, with the price table's date and source.
    Models(ModelsArgs),
    /// Review the labels AI results propose: discover, list, summary, show, review-session,
    /// approve, reject.
    #[command(subcommand)]
    Recommendations(RecommendationsCommand),
    /// Apply approved recommendations to GitHub: adds labels (removes only with
    /// --remove-labels), re-reading each issue first; prints the plan and asks before sending.
    UpdateLabels(Box<UpdateLabelsArgs>),
    /// Taxonomies made from a repository's own labels (`taxonomy init`).
    #[command(subcommand)]
    Taxonomy(TaxonomyCommand),
    /// Train the offline `local` model of a processor's taxonomy on human-labelled issues.
    Train(TrainArgs),
    /// Compare a processor's stored recommendations with the human labels: precision, recall,
    /// F1, coverage, calibration, safe thresholds; each run is recorded.
    Evaluate(EvaluateArgs),
}

#[derive(Debug, Subcommand)]
pub enum TaxonomyCommand {
    /// Write a taxonomy TOML from the labels used in DuckDB (name, GitHub description, usage).
    Init(TaxonomyInitArgs),
}

#[derive(Debug, Args)]
pub struct TaxonomyInitArgs {
    /// Organisation (owner) whose issues' labels are read.
    #[arg(long)]
    pub org: String,
    /// Only this repository of the organisation.
    #[arg(long)]
    pub repo: Option<String>,
    /// Skip labels used on fewer issues than this.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub min_issues: u64,
    /// Only labels starting with this text (e.g. `area-` or `type:`).
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Taxonomy name (default: from the org/repo and the prefix).
    #[arg(long)]
    pub name: Option<String>,
    /// Write the TOML here (an existing file is never overwritten); stdout otherwise.
    #[arg(short = 'o', long, value_name = "FILE.toml")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Processor whose taxonomy the model learns (e.g. product-labeling).
    pub processor: String,
    /// Taxonomy TOML (default: the processor's embedded taxonomy).
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
    #[command(flatten)]
    pub repo_scope: RepoScope,
    /// Learn only from issues created before this date (YYYY-MM-DD); evaluate with --since.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Processor whose stored results are evaluated.
    pub processor: String,
    #[command(flatten)]
    pub repo_scope: RepoScope,
    /// Taxonomy TOML whose labels are compared (default: the processor's embedded taxonomy).
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
    /// Only results of this model (e.g. `local`, `rules`, `openai:gpt-4o-mini`).
    #[arg(long)]
    pub model: Option<String>,
    /// Only issues created on or after this date (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only issues created before this date (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Also write a self-contained HTML report (inline SVG charts, no scripts) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Price table override (TOML), listed on top of the built-in prices.
    #[arg(long, env = env::PRICES, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// `bash`, `zsh`, `fish`, `elvish`, `powershell`, or `man` for the roff man page.
    #[arg(value_enum)]
    pub target: CompletionTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionTarget {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
    /// The man page (roff), e.g. `github-analysis completions man > github-analysis.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub scope: IssueScope,
    /// Only issues carrying this label (repeatable).
    #[arg(long = "labels")]
    pub labels: Vec<String>,
    /// Issue state to collect.
    #[arg(long, value_parser = state_parser(), default_value = "open")]
    pub state: IssueState,
    /// Only issues updated at or after this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Stop after this many issues.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Repository to skip in organisation mode (repeatable).
    #[arg(long)]
    pub exclude_repo: Vec<String>,
    /// Download images and files linked from issue bodies and comments.
    #[arg(long)]
    pub download_attachments: bool,
    /// Largest attachment to download (e.g. `10MB`, `512KB`, `2000000`); bigger ones are
    /// recorded as skipped.
    #[arg(
        long,
        default_value = "10MB",
        value_name = "SIZE",
        requires = "download_attachments"
    )]
    pub max_attachment_size: String,
    /// Ignore the stored incremental cursor and fetch every issue again.
    #[arg(long, conflicts_with = "since")]
    pub full: bool,
    /// In organisation mode, also collect archived repositories.
    #[arg(long)]
    pub include_archived: bool,
    /// GitHub token (default: env GITHUB_TOKEN).
    #[arg(long, env = env::GITHUB_TOKEN, hide_env_values = true)]
    pub token: Option<String>,
    /// In organisation mode, how many repositories to fetch at once (1 to 16). Each page costs
    /// the same GraphQL points either way; see docs/collect.md for GitHub's limits.
    #[arg(
        long,
        default_value_t = 4,
        value_name = "N",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16)
    )]
    pub parallel_repos: usize,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files to import: a JSON array of issues, one issue object, or JSON Lines.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Organisation to use when an issue has no `repository_url`.
    #[arg(long)]
    pub org: Option<String>,
    /// Repository to use when an issue has no `repository_url`.
    #[arg(long, requires = "org")]
    pub repo: Option<String>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Also load AI result files from results/.
    #[arg(long)]
    pub ai_results: bool,
    /// Reload every file, even unchanged ones.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Run one SQL statement on a read-only connection.
    Sql {
        /// The SQL statement.
        sql: String,
        /// Print at most this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Run a named query (see `query list`).
    Alias {
        /// Alias name.
        name: String,
        /// Print at most this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// List the named queries.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ProcessCommand {
    /// Label issues with the products of the taxonomy.
    ProductLabeling(Box<ProcessArgs>),
    /// Any other name: refused with the list of known processors.
    #[command(external_subcommand)]
    Unknown(Vec<String>),
}

#[derive(Debug, Args)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub scope: IssueScope,
    /// Model as `provider:model` (`openai:gpt-4o-mini`, `anthropic:…`) or `rules`.
    #[arg(long)]
    pub model: Option<String>,
    /// Show what would run and its estimated cost; call nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Process issues that already have a result.
    #[arg(long)]
    pub reprocess: bool,
    /// With --reprocess, also redo issues whose recommendation a person already approved,
    /// rejected or applied (left alone by default).
    #[arg(long, requires = "reprocess")]
    pub include_reviewed: bool,
    /// Requests in flight at once (default 8).
    #[arg(long)]
    pub concurrency: Option<usize>,
    #[command(flatten)]
    pub ai: AiArgs,
}

/// Options of AI processing shared by the processing commands.
#[derive(Debug, Clone, Default, Args)]
pub struct AiArgs {
    /// Taxonomy TOML file replacing the embedded Replicated product taxonomy.
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
    /// Model setting as KEY=VALUE (repeatable): `temperature`, `max_completion_tokens` /
    /// `max_tokens`, `reasoning_effort` (OpenAI reasoning models).
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Token budget of one issue in the prompt; longer threads keep the body and the most
    /// recent comments (default 8000).
    #[arg(long, value_name = "TOKENS")]
    pub token_budget: Option<usize>,
    /// Price table override (TOML), for models not built in or changed prices.
    #[arg(long, env = env::PRICES, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Seconds before one AI request is abandoned and retried (default 120).
    #[arg(long, env = env::REQUEST_TIMEOUT, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,
    /// Retries of a request after overloads, server errors, timeouts and network errors
    /// (default 5; rate-limit answers have their own budget of 20 waits).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Longest wait a provider may ask for (retry-after, rate-limit resets) before the request
    /// is given up instead (default 120, at most 900: longer asks are clamped to 15 minutes).
    #[arg(long, env = env::MAX_SERVER_WAIT, value_name = "SECONDS", value_parser = seconds)]
    pub max_server_wait: Option<f64>,
    /// Few-shot: add the K most similar human-labelled issues, with their labels, to each AI
    /// prompt (after the stable prefix; needs `train`'s example index; at most 20).
    #[arg(long, value_name = "K")]
    pub examples: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Create a batch job for a processor.
    Submit(Box<BatchSubmitArgs>),
    /// Refresh and show one job.
    Status(JobArg),
    /// Download and store the results of a job.
    Collect(JobArg),
    /// List active jobs.
    List,
    /// List all jobs, newest first.
    History,
    /// Show a job with its items and provider batches.
    Details(JobArg),
    /// Cancel a job at its provider.
    Cancel(JobArg),
    /// Remove a job's local records and files (never stored results).
    Remove {
        #[command(flatten)]
        job: JobArg,
        /// Remove even an active job.
        #[arg(long)]
        force: bool,
    },
    /// Resubmit only the failed or expired items of a job.
    Retry(JobArg),
    /// Finish submissions a crash interrupted and report provider batches no job records.
    Reconcile {
        /// Cancel the orphan provider batches found (asks first; `--yes` in scripts).
        #[arg(long)]
        cancel_orphans: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y', requires = "cancel_orphans")]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct JobArg {
    /// Job id, or any unique prefix of it.
    pub job: String,
}

#[derive(Debug, Args)]
pub struct BatchSubmitArgs {
    /// Processor name (e.g. product-labeling).
    pub processor: String,
    #[command(flatten)]
    pub repo_scope: RepoScope,
    /// A single issue.
    #[arg(long, requires = "repo")]
    pub issue_number: Option<u64>,
    /// Select issues with SQL returning issue rows.
    #[arg(long, conflicts_with_all = ["org", "missing_analysis"])]
    pub sql: Option<String>,
    /// Select issues that have no result for this processor.
    #[arg(long)]
    pub missing_analysis: bool,
    /// Model as `provider:model` or `rules`.
    #[arg(long)]
    pub model: Option<String>,
    /// Show the split plan and estimated cost; submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub ai: AiArgs,
}

#[derive(Debug, Subcommand)]
pub enum ProcessQueryCommand {
    /// Process issues that have no result for PROCESSOR.
    Missing {
        /// Processor name.
        processor: String,
        #[command(flatten)]
        filter: SelectionArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Reprocess issues whose result confidence is below a threshold.
    Reprocess {
        /// Processor name.
        processor: String,
        /// Confidence threshold in [0, 1].
        #[arg(long)]
        threshold: f64,
        /// Only results older than this many days.
        #[arg(long)]
        days_old: Option<u32>,
        /// Also issues whose recommendation was approved, rejected or applied (left alone by
        /// default: a person already decided on them).
        #[arg(long)]
        include_reviewed: bool,
        #[command(flatten)]
        filter: SelectionArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Process the issues returned by your own SQL.
    Custom {
        /// Processor name.
        processor: String,
        /// SELECT returning issue rows (`id`, or `org, repo, number`).
        sql: String,
        /// Process at most this many issues.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Per-processor statistics of stored results.
    Analytics,
    /// Refresh active batch jobs, collect finished ones, and list recent jobs.
    BatchStatus {
        /// Do not contact providers; show what is recorded.
        #[arg(long)]
        no_refresh: bool,
        /// Number of jobs to show.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(Debug, Args)]
pub struct SelectionArgs {
    #[command(flatten)]
    pub repo_scope: RepoScope,
    /// Issue state.
    #[arg(long, value_parser = state_parser(), default_value = "open")]
    pub state: IssueState,
    /// Process at most this many issues.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Submit through the provider's batch API (half price, asynchronous).
    #[arg(long)]
    pub batch_mode: bool,
    /// Model as `provider:model` or `rules`.
    #[arg(long)]
    pub model: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show the selection and estimated cost; process nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Requests in flight at once (real-time mode).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// In batch mode, wait for the job to end and collect its results.
    #[arg(long)]
    pub wait: bool,
    /// Seconds between status checks with --wait.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub poll_interval: f64,
    #[command(flatten)]
    pub ai: AiArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Model for the labeling step (default `local`: the model the demo trains; offline, free,
    /// no key).
    #[arg(long, default_value = "local")]
    pub model: String,
}

/// A confidence in [0, 1].
fn confidence(s: &str) -> Result<f64, String> {
    bounded(s, 1.0, "number", "")
}

/// `--status` values, parsed into [`RecStatus`].
fn rec_status_parser() -> impl TypedValueParser<Value = RecStatus> {
    PossibleValuesParser::new(RecStatus::names()).try_map(|s| {
        RecStatus::parse(&s).ok_or_else(|| format!("unknown recommendation status {s:?}"))
    })
}

pub use crate::db::RecStatus;

#[derive(Debug, Subcommand)]
pub enum RecommendationsCommand {
    /// Derive recommendations from stored results: one per issue, processor and result. Running
    /// it twice creates nothing new; reviewed ones keep their status.
    Discover(DiscoverArgs),
    /// List recommendations (each issue's current one; --history for older ones too).
    List(RecListArgs),
    /// Counts per status, per proposed label and per confidence bucket.
    Summary(RecScopeArgs),
    /// One issue: title, URL, labels now, proposed additions and removals with the model's
    /// confidence and reasoning, review status and history.
    Show(RecShowArgs),
    /// Review recommendations one at a time on a terminal (approve / reject / modify / needs
    /// modification / skip / quit); every decision is saved at once.
    ReviewSession(ReviewArgs),
    /// Approve recommendations: ISSUE... or --all with filters (e.g. --label L --min-confidence 0.9).
    Approve(DecideArgs),
    /// Reject recommendations: ISSUE... or --all with filters.
    Reject(DecideArgs),
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Processor whose results to read.
    #[arg(default_value = "product-labeling")]
    pub processor: String,
    #[command(flatten)]
    pub repo_scope: RepoScope,
    /// Re-derive every current, not yet applied recommendation from the issue's labels now and
    /// send it back to review (approved / rejected ones become pending again).
    #[arg(long)]
    pub force_refresh: bool,
    /// Taxonomy TOML the results were made with: only its labels are ever proposed for removal
    /// (default: the embedded taxonomy).
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
}

/// Which recommendations: shared by list, summary, review-session, approve and reject.
#[derive(Debug, Clone, Args)]
pub struct RecScopeArgs {
    #[command(flatten)]
    pub repo_scope: RepoScope,
    /// Processor (default: all).
    #[arg(long)]
    pub processor: Option<String>,
    /// Only recommendations proposing this label (to add or to remove).
    #[arg(long)]
    pub label: Option<String>,
    /// Only at or above this confidence (the result's; with --label, the one given to that label).
    #[arg(long, value_name = "X", value_parser = confidence)]
    pub min_confidence: Option<f64>,
}

#[derive(Debug, Args)]
pub struct RecListArgs {
    #[command(flatten)]
    pub scope: RecScopeArgs,
    /// Only this status (repeatable).
    #[arg(long, value_parser = rec_status_parser())]
    pub status: Vec<RecStatus>,
    /// Also older recommendations replaced by newer results (kept for audit).
    #[arg(long)]
    pub history: bool,
    /// Show at most this many.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RecShowArgs {
    /// The issue: `org/repo#N`, its GitHub URL, or `N` with --org and --repo.
    pub issue: String,
    #[command(flatten)]
    pub repo_scope: RepoScope,
    /// Processor (default: all).
    #[arg(long)]
    pub processor: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub scope: RecScopeArgs,
    /// Statuses to review (repeatable; default pending).
    #[arg(long, value_parser = rec_status_parser())]
    pub status: Vec<RecStatus>,
    /// Taxonomy TOML whose labels the modify picker offers (default: the embedded taxonomy).
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// Issues (`org/repo#N`, URL, or `N` with --org and --repo): their current recommendation.
    #[arg(value_name = "ISSUE", required_unless_present = "all")]
    pub issues: Vec<String>,
    /// Every pending recommendation matching the filters.
    #[arg(long, conflicts_with = "issues")]
    pub all: bool,
    #[command(flatten)]
    pub scope: RecScopeArgs,
    /// A note recorded with the decision.
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateLabelsArgs {
    #[command(flatten)]
    pub scope: IssueScope,
    /// Only recommendations at or above this confidence.
    #[arg(long, value_name = "X", value_parser = confidence)]
    pub min_confidence: Option<f64>,
    /// Print the plan and record it (label_changes with dry_run); send nothing to GitHub.
    #[arg(long)]
    pub dry_run: bool,
    /// Also apply pending (unreviewed) recommendations at or above --min-confidence: an
    /// explicit rule instead of a person's approval.
    #[arg(long, requires = "min_confidence")]
    pub ignore_status: bool,
    /// Also remove the labels a recommendation judges wrong (additive without it).
    #[arg(long)]
    pub remove_labels: bool,
    /// Post one comment per changed issue with the labels, confidence and reasoning (never
    /// twice for the same recommendation).
    #[arg(long)]
    pub comment: bool,
    /// Create labels the repository lacks (with the taxonomy's description) instead of failing
    /// those issues.
    #[arg(long)]
    pub create_missing_labels: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Processor (default: all).
    #[arg(long)]
    pub processor: Option<String>,
    /// Taxonomy TOML for the descriptions of created labels (default: the embedded taxonomy).
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
    /// GitHub token with write access to issues (default: env GITHUB_TOKEN).
    #[arg(long, env = env::GITHUB_TOKEN, hide_env_values = true)]
    pub token: Option<String>,
}

/// `--org` (required) / `--repo` / `--issue-number`: an organisation, one of its
/// repositories, or one issue.
#[derive(Debug, Clone, Args)]
pub struct IssueScope {
    /// GitHub organisation or user that owns the repositories.
    #[arg(long)]
    pub org: String,
    /// Repository (all of the organisation's repositories if omitted).
    #[arg(long)]
    pub repo: Option<String>,
    /// A single issue (with --repo).
    #[arg(long, requires = "repo")]
    pub issue_number: Option<u64>,
}

impl IssueScope {
    /// `org`, `org/repo` or `org/repo#N`, for messages.
    pub fn describe(&self) -> String {
        match (&self.repo, self.issue_number) {
            (Some(r), Some(n)) => format!("{}/{r}#{n}", self.org),
            (Some(r), None) => format!("{}/{r}", self.org),
            _ => self.org.clone(),
        }
    }
}

/// `--org` / `--repo`: an organisation, or one of its repositories.
#[derive(Debug, Clone, Default, Args)]
pub struct RepoScope {
    /// Organisation.
    #[arg(long)]
    pub org: Option<String>,
    /// Repository (with --org).
    #[arg(long, requires = "org")]
    pub repo: Option<String>,
}
