//! Taxonomies: the labels a labeling processor may recommend, with descriptions and weighted
//! signals. The Replicated product set is embedded; `--taxonomy FILE.toml` replaces it.

use std::path::Path;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{user, UserContext};

pub const DEFAULT_TAXONOMY: &str = include_str!("default_taxonomy.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxonomyFile {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// Exactly one label per issue (e.g. issue types): models recommend at most one.
    #[serde(default)]
    exclusive: bool,
    #[serde(default)]
    rules: RulesConfig,
    labels: Vec<LabelFile>,
}

/// How the offline `rules` model turns signal matches into labels.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Minimum score for a label to be recommended.
    pub threshold: f64,
    /// A title match counts this many times (titles are short and on topic).
    pub title_weight: f64,
    /// A comment match counts this many times (comments drift off topic).
    pub comment_weight: f64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            threshold: 3.0,
            title_weight: 2.0,
            comment_weight: 0.5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelFile {
    name: String,
    description: String,
    #[serde(default)]
    signals: Vec<SignalFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalFile {
    pattern: String,
    #[serde(default = "one")]
    weight: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone)]
pub struct Signal {
    pub pattern: String,
    pub weight: f64,
    /// Compiled on first use ([`Signal::regex`]): only the `rules` model matches signals, and
    /// compiling the embedded taxonomy's 72 patterns took ~40 ms of every run that loads it
    /// (collect, status, retry …), most of the CPU a batch command spends outside DuckDB.
    regex: OnceLock<Result<Regex, regex::Error>>,
}

impl Signal {
    /// The pattern compiled case-insensitive, at most [`SIGNAL_SIZE_LIMIT`] large; the error
    /// is only ever the size limit (the syntax was checked when the taxonomy was parsed).
    fn compiled(&self) -> &Result<Regex, regex::Error> {
        self.regex.get_or_init(|| {
            RegexBuilder::new(&self.pattern)
                .case_insensitive(true)
                .size_limit(SIGNAL_SIZE_LIMIT)
                .build()
        })
    }

    /// The compiled pattern; `None` when it is too large, which [`Taxonomy::compile_signals`]
    /// reports as an error before a `rules` run.
    pub fn regex(&self) -> Option<&Regex> {
        self.compiled().as_ref().ok()
    }
}

/// Compiled size limit of one signal's regex (a runaway pattern is refused, not run).
const SIGNAL_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct TaxonomyLabel {
    pub name: String,
    pub description: String,
    pub signals: Vec<Signal>,
}

/// A validated taxonomy with compiled signals.
#[derive(Debug, Clone)]
pub struct Taxonomy {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// Exactly one label per issue: validation refuses two, models pick one.
    pub exclusive: bool,
    pub rules: RulesConfig,
    pub labels: Vec<TaxonomyLabel>,
    /// SHA-256 of the TOML source: results say exactly which taxonomy produced them.
    pub sha256: String,
}

impl Taxonomy {
    pub fn default_replicated() -> anyhow::Result<Self> {
        Self::parse(DEFAULT_TAXONOMY)
            .map_err(|e| e.context("the embedded default taxonomy is invalid"))
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .user_context(|| format!("cannot read taxonomy file {}", path.display()))?;
        Self::parse(&text).map_err(|e| {
            e.context(crate::error::UserError(format!(
                "invalid taxonomy file {}",
                path.display()
            )))
        })
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: TaxonomyFile = toml::from_str(text).map_err(|e| user(e.to_string()))?;
        if file.name.trim().is_empty() {
            return Err(user("`name` is empty"));
        }
        if file.labels.is_empty() {
            return Err(user("a taxonomy needs at least one [[labels]] entry"));
        }
        let r = file.rules;
        for (k, v) in [
            ("threshold", r.threshold),
            ("title_weight", r.title_weight),
            ("comment_weight", r.comment_weight),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(user(format!("[rules] {k} must be a non-negative number")));
            }
        }
        if r.threshold == 0.0 {
            return Err(user("[rules] threshold must be above 0"));
        }
        let mut labels: Vec<TaxonomyLabel> = Vec::with_capacity(file.labels.len());
        for l in file.labels {
            let name = l.name.trim().to_string();
            if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                return Err(user(format!(
                    "label name {:?} must be 1-100 printable characters",
                    l.name
                )));
            }
            if labels.iter().any(|x| x.name == name) {
                return Err(user(format!("label {name:?} is listed twice")));
            }
            if l.description.trim().is_empty() {
                return Err(user(format!("label {name:?} has an empty description")));
            }
            let mut signals = Vec::with_capacity(l.signals.len());
            for s in l.signals {
                if !s.weight.is_finite() || s.weight <= 0.0 {
                    return Err(user(format!(
                        "label {name:?}: signal {:?} needs a positive weight",
                        s.pattern
                    )));
                }
                // The syntax only (cheap, the same message as a compile's); compiling waits for
                // the first match.
                regex_syntax::ParserBuilder::new()
                    .case_insensitive(true)
                    .build()
                    .parse(&s.pattern)
                    .map_err(|e| invalid_signal(&name, &s.pattern, &e))?;
                signals.push(Signal {
                    pattern: s.pattern,
                    weight: s.weight,
                    regex: OnceLock::new(),
                });
            }
            labels.push(TaxonomyLabel {
                name,
                description: l.description.trim().to_string(),
                signals,
            });
        }
        Ok(Self {
            name: file.name.trim().to_string(),
            version: file.version.unwrap_or_else(|| "1".into()),
            description: file.description,
            exclusive: file.exclusive,
            rules: r,
            labels,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        })
    }

    /// Compiles every signal now, so that a pattern too large to compile is an error before a
    /// `rules` run rather than a signal that never matches.
    pub fn compile_signals(&self) -> anyhow::Result<()> {
        for label in &self.labels {
            for s in &label.signals {
                if let Err(e) = s.compiled() {
                    return Err(invalid_signal(&label.name, &s.pattern, e));
                }
            }
        }
        Ok(())
    }

    pub fn contains(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l.name == label)
    }

    pub fn names(&self) -> Vec<&str> {
        self.labels.iter().map(|l| l.name.as_str()).collect()
    }
}

fn invalid_signal(label: &str, pattern: &str, e: &dyn std::fmt::Display) -> anyhow::Error {
    user(format!(
        "label {label:?}: signal {pattern:?} is not a valid regex: {e}"
    ))
}

/// A label as `taxonomy init` found it in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct UsedLabel {
    pub name: String,
    /// The GitHub label description, when the label has one.
    pub description: Option<String>,
    /// Issues carrying the label.
    pub issues: u64,
}

/// The TOML of a taxonomy made from a repository's own labels (`taxonomy init`): one entry per
/// label with its GitHub description (or a placeholder to edit) and its usage as a comment. The
/// result parses with [`Taxonomy::parse`].
pub fn init_toml(name: &str, source: &str, exclusive: bool, labels: &[UsedLabel]) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = format!(
        "# Taxonomy made by `taxonomy init` from the labels of {source}.\n\
         # Edit the descriptions (models read them), drop labels you never want recommended, and\n\
         # set `exclusive = true` when every issue has exactly one of these labels (issue types).\n\
         name = {}\nversion = \"1\"\ndescription = {}\n{}exclusive = {exclusive}\n",
        q(name),
        q(&format!("Labels used on {source}")),
        if exclusive {
            "# No issue carries two of these labels: each issue gets exactly one.\n"
        } else {
            ""
        }
    );
    for l in labels {
        let description = l
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map_or_else(
                || format!("Issues labelled {} (no description on GitHub)", l.name),
                str::to_string,
            );
        out.push_str(&format!(
            "\n# used on {} issue(s)\n[[labels]]\nname = {}\ndescription = {}\n",
            l.issues,
            q(&l.name),
            q(&description)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_taxonomy_has_every_replicated_product() {
        let t = Taxonomy::default_replicated().unwrap();
        let names = t.names();
        for p in [
            "kots",
            "troubleshoot",
            "kurl",
            "embedded-cluster",
            "sdk",
            "docs",
            "vendor",
            "downloadportal",
            "compatibility-matrix",
        ] {
            assert!(
                names.contains(&format!("product::{p}").as_str()),
                "missing {p}"
            );
        }
        assert!(t
            .labels
            .iter()
            .all(|l| !l.signals.is_empty() && l.description.len() > 40));
        assert_eq!(t.sha256.len(), 64);
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        let cases = [
            ("name = 'x'\nlabels = []", "at least one"),
            ("name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'\nsignals = [{pattern = '(', weight = 1.0}]", "not a valid regex"),
            ("name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'\n[[labels]]\nname = 'a'\ndescription = 'd'", "twice"),
            ("name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'\nsignals = [{pattern = 'a', weight = -1.0}]", "positive weight"),
            ("name = 'x'\ncolour = 1\n[[labels]]\nname = 'a'\ndescription = 'd'", "unknown field"),
            ("name = 'x'\n[rules]\nthreshold = 0.0\n[[labels]]\nname = 'a'\ndescription = 'd'", "threshold"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Taxonomy::parse(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn init_toml_parses_back_with_every_label() {
        let labels = [
            UsedLabel {
                name: "bug".into(),
                description: Some("Something \"isn't\" working".into()),
                issues: 12,
            },
            UsedLabel {
                name: "area-System.Net".into(),
                description: None,
                issues: 3,
            },
        ];
        let text = init_toml("acme/app labels", "acme/app", false, &labels);
        let t = Taxonomy::parse(&text).unwrap();
        assert_eq!(t.names(), ["bug", "area-System.Net"]);
        assert_eq!(t.labels[0].description, "Something \"isn't\" working");
        assert!(t.labels[1].description.contains("no description"));
        assert!(text.contains("# used on 12 issue(s)"));
        assert!(!t.exclusive);
        assert!(
            Taxonomy::parse(&init_toml("x", "acme/app", true, &labels))
                .unwrap()
                .exclusive
        );
    }

    #[test]
    fn exclusive_defaults_to_false_and_can_be_set() {
        let t = Taxonomy::parse("name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'").unwrap();
        assert!(!t.exclusive);
        let t = Taxonomy::parse(
            "name = 'x'\nexclusive = true\n[[labels]]\nname = 'a'\ndescription = 'd'",
        )
        .unwrap();
        assert!(t.exclusive);
    }

    #[test]
    fn a_signal_too_large_to_compile_is_refused_before_use() {
        // Valid syntax (parse accepts it), but thousands of Unicode word classes compile far
        // beyond the size limit.
        let t = Taxonomy::parse(
            "name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'\nsignals = [{pattern = '\\w{5000}'}]",
        )
        .unwrap();
        let err = format!("{:#}", t.compile_signals().unwrap_err());
        assert!(
            err.contains("not a valid regex") && err.contains("size limit"),
            "{err}"
        );
        assert!(t.labels[0].signals[0].regex().is_none());
    }

    #[test]
    fn signals_are_case_insensitive_with_default_weight() {
        let t = Taxonomy::parse(
            "name = 'x'\n[[labels]]\nname = 'a'\ndescription = 'd'\nsignals = [{pattern = 'kots'}]",
        )
        .unwrap();
        assert!(t.labels[0].signals[0].regex().unwrap().is_match("KOTS"));
        assert_eq!(t.labels[0].signals[0].weight, 1.0);
    }
}
