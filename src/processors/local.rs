//! The `local` model's analysis of an issue for `product-labeling`: calibrated probabilities
//! from the trained model (src/learn/), recommendations by its rule (top label of an exclusive
//! taxonomy, else every label ≥ 0.5) and reasoning naming the terms that drove each label.

use crate::learn::{LocalModel, Text};
use crate::processors::product_labeling::{Analysis, LabelAssessment, RecommendedLabel};
use crate::store::{Issue, StoredIssue};

/// Comments the model reads (the first ones say what the issue is about); training reads the
/// same number.
pub const COMMENTS_READ: usize = 3;

/// A current label below this probability is judged wrong (a removal suggestion): low on
/// purpose, removing a person's label needs strong evidence.
const KEEP_CURRENT: f64 = 0.2;

/// The first comments a model reads.
pub fn comments_read(i: &Issue) -> Vec<String> {
    i.comments
        .iter()
        .filter_map(|c| c.body.clone())
        .take(COMMENTS_READ)
        .collect()
}

/// What a model reads of an issue (`comments` from [`comments_read`]).
pub fn text_of<'a>(i: &'a Issue, comments: &'a [String]) -> Text<'a> {
    Text {
        title: &i.title,
        body: i.body.as_deref().unwrap_or(""),
        comments,
    }
}

pub fn analysis(model: &LocalModel, issue: &StoredIssue) -> Analysis {
    let i = &issue.issue;
    let comments = comments_read(i);
    let text = text_of(i, &comments);
    let scores = model.predict(&text);
    let p: Vec<f32> = scores.iter().map(|s| s.probability as f32).collect();
    let recommended: Vec<RecommendedLabel> = model
        .recommend(&p)
        .into_iter()
        .map(|(label, confidence)| {
            let s = scores.iter().find(|s| s.label == label);
            RecommendedLabel {
                reasoning: explain(s.map_or(&[][..], |s| s.terms.as_slice())),
                label,
                confidence,
            }
        })
        .collect();
    let assessments = i
        .labels
        .iter()
        .filter_map(|l| scores.iter().find(|s| s.label == l.name))
        .map(|s| LabelAssessment {
            label: s.label.clone(),
            correct: s.probability >= KEEP_CURRENT
                || recommended.iter().any(|r| r.label == s.label),
            reasoning: format!("local model probability {:.2}", s.probability),
        })
        .collect();
    let mut ranked = scores.clone();
    ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    let confidence = recommended.first().map_or_else(
        || 1.0 - ranked.first().map_or(0.0, |s| s.probability),
        |r| r.confidence,
    );
    let summary = match recommended.first() {
        Some(_) => format!(
            "The local model recommends {}",
            recommended
                .iter()
                .map(|r| r.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "No label reaches probability 0.5".to_string(),
    };
    let top: Vec<String> = ranked
        .iter()
        .take(3)
        .map(|s| format!("{} {:.2}", s.label, s.probability))
        .collect();
    Analysis {
        recommended_labels: recommended,
        current_labels_assessment: assessments,
        confidence: (confidence.clamp(0.0, 1.0) * 100.0).round() / 100.0,
        summary,
        reasoning: format!(
            "local model (taxonomy {}, trained on {} issues): most likely {}",
            model.info.taxonomy_name,
            model.info.training_ids.len(),
            top.join(", ")
        ),
        normalized: Vec::new(),
    }
}

fn explain(terms: &[String]) -> String {
    if terms.is_empty() {
        "local model: no strong term, the label's prior decided".into()
    } else {
        let quoted: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
        format!("local model: strongest terms {}", quoted.join(", "))
    }
}

/// Few-shot examples for AI models (`--examples K`): the K human-labelled issues most similar
/// to the one being labelled, found in the `local` model's feature space.
#[derive(Clone)]
pub struct FewShot {
    pub model: std::sync::Arc<LocalModel>,
    pub index: std::sync::Arc<crate::learn::ExampleIndex>,
    pub k: usize,
}

impl std::fmt::Debug for FewShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FewShot")
            .field("k", &self.k)
            .field("examples", &self.index.examples.len())
            .finish()
    }
}

impl FewShot {
    /// The examples block that goes before the issue in the user message (after the stable
    /// system prefix, so prompt caching still applies), and the ids of the examples used.
    pub fn block(&self, issue: &StoredIssue) -> (String, Vec<String>) {
        let i = &issue.issue;
        let comments = comments_read(i);
        let text = text_of(i, &comments);
        let id = format!("{}/{}#{}", issue.org, issue.repo, i.number);
        let found = self.index.similar(&self.model, &text, &id, self.k);
        if found.is_empty() {
            return (String::new(), Vec::new());
        }
        let mut s = String::from(
            "Labelled examples: the most similar issues of this repository, with the labels \
             people gave them. They show how the labels are used; judge the issue below on its own.\n",
        );
        for (n, e) in found.iter().enumerate() {
            s.push_str(&format!(
                "\nExample {} (labels: {})\nTitle: {}\n{}\n",
                n + 1,
                e.labels.join(", "),
                e.title,
                e.excerpt
            ));
        }
        s.push_str("\nThe issue to label:\n\n");
        (s, found.iter().map(|e| e.id.clone()).collect())
    }

    /// Estimated prompt tokens the examples add to one request.
    pub fn tokens_per_issue(&self) -> u64 {
        (self.k * self.index.mean_chars()) as u64 / 4 + 40
    }
}
