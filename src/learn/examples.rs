//! The few-shot example index: human-labelled training issues in the `local` model's TF-IDF
//! space (each vector cut to its strongest terms), searched by cosine similarity for the K
//! issues most like the one being labelled (`--examples K`). Built by `train`, stored next to
//! the model as `<taxonomy sha>.examples.json` (docs/quality.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{user, UserContext};
use crate::learn::features::Text;
use crate::learn::LocalModel;

/// Terms kept per example: enough for similarity, small on disk.
const TERMS_KEPT: usize = 64;
/// Characters of an example's body shown in a prompt.
pub const EXCERPT_CHARS: usize = 400;
/// Examples indexed at most (the most recent training issues).
pub const MAX_EXAMPLES: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub id: String,
    pub labels: Vec<String>,
    pub title: String,
    pub excerpt: String,
    idx: Vec<u32>,
    val: Vec<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExampleIndex {
    /// SHA-256 of the taxonomy the labels belong to.
    pub taxonomy_sha256: String,
    pub examples: Vec<Example>,
}

fn excerpt(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

impl ExampleIndex {
    /// Indexes labelled issues `(id, text, labels)` with the model's features.
    pub fn build<'a>(
        model: &LocalModel,
        docs: impl IntoIterator<Item = (String, Text<'a>, Vec<String>)>,
    ) -> Self {
        let examples = docs
            .into_iter()
            .map(|(id, text, labels)| {
                let v = model.vectorize(&text);
                let mut pairs: Vec<(u32, f32)> = v.idx.into_iter().zip(v.val).collect();
                pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
                pairs.truncate(TERMS_KEPT);
                let norm = pairs
                    .iter()
                    .map(|p| p.1 * p.1)
                    .sum::<f32>()
                    .sqrt()
                    .max(1e-9);
                Example {
                    id,
                    labels,
                    title: text.title.to_string(),
                    excerpt: excerpt(text.body),
                    idx: pairs.iter().map(|p| p.0).collect(),
                    val: pairs.iter().map(|p| p.1 / norm).collect(),
                }
            })
            .collect();
        Self {
            taxonomy_sha256: model.info.taxonomy_sha256.clone(),
            examples,
        }
    }

    /// The `k` examples most similar to `text` (never the issue `exclude` itself), best first;
    /// examples sharing no term are not returned.
    pub fn similar(
        &self,
        model: &LocalModel,
        text: &Text<'_>,
        exclude: &str,
        k: usize,
    ) -> Vec<&Example> {
        let q = model.vectorize(text);
        let query: HashMap<u32, f32> = q.idx.into_iter().zip(q.val).collect();
        let mut scored: Vec<(f32, usize)> = self
            .examples
            .iter()
            .enumerate()
            .filter(|(_, e)| e.id != exclude)
            .map(|(i, e)| {
                let s: f32 = e
                    .idx
                    .iter()
                    .zip(&e.val)
                    .filter_map(|(f, v)| query.get(f).map(|q| q * v))
                    .sum();
                (s, i)
            })
            .filter(|(s, _)| *s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(k)
            .map(|(_, i)| &self.examples[i])
            .collect()
    }

    /// Mean characters of an example as shown in a prompt (for cost estimates).
    pub fn mean_chars(&self) -> usize {
        if self.examples.is_empty() {
            return 0;
        }
        let total: usize = self
            .examples
            .iter()
            .map(|e| {
                e.title.len()
                    + e.excerpt.len()
                    + e.labels.iter().map(String::len).sum::<usize>()
                    + 40
            })
            .sum();
        total / self.examples.len()
    }

    /// Where the index of a model lives.
    pub fn path(model_path: &Path) -> PathBuf {
        model_path.with_extension("examples.json")
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        crate::store::atomic::write_atomic(path, &serde_json::to_vec(self)?)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .user_context(|| format!("cannot read the example index {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| user(format!("invalid example index {}: {e}", path.display())))
    }
}
