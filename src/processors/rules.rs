//! The offline `rules` model: scores each taxonomy label by its weighted signals
//! (case-insensitive regexes over title, body and comments). Deterministic, no network, no key.

use crate::processors::taxonomy::Taxonomy;

/// The text the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub comments: &'a [&'a str],
}

/// Where a signal matched and what it added to the score.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalMatch {
    pub pattern: String,
    pub field: &'static str,
    /// The matched text as it appears (first match in that field).
    pub text: String,
    pub points: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelScore {
    pub label: String,
    pub score: f64,
    pub matches: Vec<SignalMatch>,
}

impl LabelScore {
    /// `score / (score + threshold)`: 0.5 at the threshold, rising towards 1 as evidence
    /// piles up; rounded to two decimals so results are stable across platforms.
    pub fn confidence(&self, threshold: f64) -> f64 {
        if self.score <= 0.0 {
            return 0.0;
        }
        (self.score / (self.score + threshold) * 100.0).round() / 100.0
    }

    /// One line naming the signals that matched, for the result's reasoning.
    pub fn explain(&self) -> String {
        let parts: Vec<String> = self
            .matches
            .iter()
            .map(|m| format!("\"{}\" in {} (+{:.1})", m.text, m.field, m.points))
            .collect();
        format!("score {:.1}: {}", self.score, parts.join(", "))
    }
}

/// Comments counted per signal: one chatty thread should not outweigh the title and body.
const MAX_COMMENTS_PER_SIGNAL: usize = 2;

/// Scores every label; the result keeps the taxonomy's order.
pub fn score(taxonomy: &Taxonomy, doc: &Document<'_>) -> Vec<LabelScore> {
    let r = &taxonomy.rules;
    taxonomy
        .labels
        .iter()
        .map(|label| {
            let mut matches = Vec::new();
            for s in &label.signals {
                // None: too large to compile, refused before a run (`Taxonomy::compile_signals`).
                let Some(regex) = s.regex() else { continue };
                if let Some(m) = regex.find(doc.title) {
                    matches.push(SignalMatch {
                        pattern: s.pattern.clone(),
                        field: "title",
                        text: m.as_str().to_string(),
                        points: s.weight * r.title_weight,
                    });
                }
                if let Some(m) = regex.find(doc.body) {
                    matches.push(SignalMatch {
                        pattern: s.pattern.clone(),
                        field: "body",
                        text: m.as_str().to_string(),
                        points: s.weight,
                    });
                }
                let mut hits = doc.comments.iter().filter_map(|c| regex.find(c));
                let first = hits.next();
                let count =
                    usize::from(first.is_some()) + hits.take(MAX_COMMENTS_PER_SIGNAL - 1).count();
                if let Some(m) = first {
                    matches.push(SignalMatch {
                        pattern: s.pattern.clone(),
                        field: "comments",
                        text: m.as_str().to_string(),
                        points: s.weight * r.comment_weight * count as f64,
                    });
                }
            }
            matches.retain(|m| m.points > 0.0);
            let score = matches.iter().map(|m| m.points).sum();
            LabelScore {
                label: label.name.clone(),
                score,
                matches,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taxonomy() -> Taxonomy {
        Taxonomy::default_replicated().unwrap()
    }

    fn scores(title: &str, body: &str, comments: &[&str]) -> Vec<LabelScore> {
        let t = taxonomy();
        let mut s = score(
            &t,
            &Document {
                title,
                body,
                comments,
            },
        );
        s.retain(|l| l.score > 0.0);
        s.sort_by(|a, b| b.score.total_cmp(&a.score));
        s
    }

    #[test]
    fn title_matches_weigh_more_than_body_and_comments() {
        let s = scores("kotsadm pod crashloops", "", &[]);
        assert_eq!(s[0].label, "product::kots");
        assert_eq!(s[0].score, 8.0); // \bkotsadm\b weight 4 × title 2
        let s = scores("", "kotsadm pod crashloops", &[]);
        assert_eq!(s[0].score, 4.0);
        let s = scores("", "", &["kotsadm", "kotsadm again", "and kotsadm"]);
        assert_eq!(s[0].score, 4.0); // 4 × 0.5 × at most 2 comments
    }

    #[test]
    fn picks_the_product_the_issue_is_about() {
        let s = scores(
            "support-bundle fails to collect logs",
            "Running kubectl support-bundle with the default collectors hangs",
            &[],
        );
        assert_eq!(s[0].label, "product::troubleshoot");
        let s = scores(
            "Install fails on k0s node",
            "embedded-cluster install stops at the local artifact mirror",
            &[],
        );
        assert_eq!(s[0].label, "product::embedded-cluster");
        let s = scores(
            "ekco restarts",
            "kurl-proxy cannot reach the kURL cluster",
            &[],
        );
        assert_eq!(s[0].label, "product::kurl");
        let s = scores("replicated cluster create times out", "", &[]);
        assert_eq!(s[0].label, "product::compatibility-matrix");
        assert!(scores("Crash in HashMap", "Null reference in corefx", &[]).is_empty());
    }

    #[test]
    fn scoring_is_case_insensitive_and_deterministic() {
        let a = scores("KOTS upgrade", "Admin Console", &[]);
        let b = scores("KOTS upgrade", "Admin Console", &[]);
        assert_eq!(a, b);
        assert_eq!(a[0].label, "product::kots");
        assert!(a[0].explain().contains("\"KOTS\" in title"));
    }

    #[test]
    fn confidence_is_half_at_threshold_and_grows() {
        let l = |score| LabelScore {
            label: "x".into(),
            score,
            matches: vec![],
        };
        assert_eq!(l(3.0).confidence(3.0), 0.5);
        assert_eq!(l(9.0).confidence(3.0), 0.75);
        assert_eq!(l(0.0).confidence(3.0), 0.0);
        assert!(l(1000.0).confidence(3.0) <= 1.0);
    }
}
