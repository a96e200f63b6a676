//! The `local` model: TF-IDF features + a calibrated linear classifier for one taxonomy, its
//! training (held-out calibration and metrics, then a refit on every issue), predictions that
//! name their strongest terms, and its file (`models/<processor>/<taxonomy sha>.model` under
//! the data directory: a JSON header with provenance, then little-endian f32 arrays).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{user, UserContext};
use crate::learn::classifier::{Example, Linear, Mode, Rng, TrainConfig};
use crate::learn::features::{terms, words_of, Idf, SparseVec, Terms, Text};
use crate::quality::metrics::{self, Sample};

const MAGIC: &[u8] = b"GAQLM1\n";
/// Share of the training issues held out to fit the temperature and measure the model.
pub const HELD_OUT: f64 = 0.15;

/// Provenance and settings stored with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub processor: String,
    pub taxonomy_name: String,
    pub taxonomy_version: String,
    pub taxonomy_sha256: String,
    pub labels: Vec<String>,
    pub exclusive: bool,
    pub created_at: String,
    /// The SQL (and parameters) that selected the training issues.
    pub training_query: String,
    /// Issues the model learnt from: `evaluate` never scores it on them.
    pub training_ids: Vec<String>,
    /// Held-out metrics measured at training time (macro-F1, coverage, ECE …).
    pub metrics: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    info: ModelInfo,
    softmax: bool,
    features: usize,
    classes: usize,
    temperature: f32,
}

/// One training issue: its text and the indices (into `ModelInfo::labels`) of its labels.
#[derive(Debug, Clone)]
pub struct TrainingDoc<'a> {
    pub id: String,
    pub text: Text<'a>,
    pub labels: Vec<usize>,
}

/// A label's probability and the terms of the issue that pushed it up most.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelScore {
    pub label: String,
    pub probability: f64,
    pub terms: Vec<String>,
}

#[derive(Clone)]
pub struct LocalModel {
    pub info: ModelInfo,
    idf: Idf,
    linear: Linear,
}

fn mode_of(exclusive: bool) -> Mode {
    if exclusive {
        Mode::Softmax
    } else {
        Mode::OneVsRest
    }
}

/// Softmax class weights (n / (k · n_c))^½, within [0.5, 5]: rare labels count more, without
/// letting a handful of issues dominate.
fn class_weights(docs: &[TrainingDoc<'_>], k: usize) -> Vec<f32> {
    let mut n_c = vec![0usize; k];
    for d in docs {
        for &c in &d.labels {
            n_c[c] += 1;
        }
    }
    let n = docs.len().max(1) as f32;
    n_c.iter()
        .map(|&c| {
            if c == 0 {
                1.0
            } else {
                (n / (k as f32 * c as f32)).sqrt().clamp(0.5, 5.0)
            }
        })
        .collect()
}

/// The terms of every training issue, counted on every core (the larger part of training
/// on a big corpus).
fn parallel_terms(docs: &[TrainingDoc<'_>]) -> Vec<Terms> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = docs.len().div_ceil(cores).max(256);
    std::thread::scope(|s| {
        let parts: Vec<_> = docs
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|d| terms(&d.text)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn fit(
    info: &ModelInfo,
    docs: &[TrainingDoc<'_>],
    t: &[Terms],
    cfg: &TrainConfig,
) -> (Idf, Linear, Vec<SparseVec>) {
    let idf = Idf::fit(t);
    let x: Vec<SparseVec> = t.iter().map(|t| idf.transform(t)).collect();
    let ex: Vec<Example<'_>> = x
        .iter()
        .zip(docs)
        .map(|(v, d)| Example {
            idx: &v.idx,
            val: &v.val,
            labels: &d.labels,
        })
        .collect();
    let k = info.labels.len();
    let weights = if info.exclusive {
        class_weights(docs, k)
    } else {
        vec![1.0; k]
    };
    let linear = Linear::train(mode_of(info.exclusive), k, idf.len(), &ex, &weights, cfg);
    (idf, linear, x)
}

impl LocalModel {
    /// Trains on 85% of `docs`, fits the temperature on the held-out 15% and measures the model
    /// there (stored in `info.metrics`). The held-out issues count as training issues (they
    /// set the temperature): `evaluate` never scores the model on them either.
    pub fn train(
        mut info: ModelInfo,
        docs: &[TrainingDoc<'_>],
        cfg: &TrainConfig,
    ) -> anyhow::Result<Self> {
        let k = info.labels.len();
        if k == 0 {
            return Err(user("the taxonomy has no labels to learn"));
        }
        let seen = (0..k)
            .filter(|c| docs.iter().any(|d| d.labels.contains(c)))
            .count();
        if docs.len() < 10 || seen < 2 {
            return Err(user(format!(
                "too few human-labelled issues to learn from: {} issue(s) carrying {seen} of the \
                 taxonomy's labels (need at least 10 issues and 2 labels)",
                docs.len()
            )));
        }
        let all_terms: Vec<Terms> = parallel_terms(docs);
        let mut order: Vec<usize> = (0..docs.len()).collect();
        Rng::new(cfg.seed ^ 0x5eed).shuffle(&mut order);
        let n_held = ((docs.len() as f64 * HELD_OUT).round() as usize).max(1);
        let (held, fit_part) = order.split_at(n_held);
        let pick = |ix: &[usize]| {
            (
                ix.iter().map(|&i| docs[i].clone()).collect::<Vec<_>>(),
                ix.iter().map(|&i| all_terms[i].clone()).collect::<Vec<_>>(),
            )
        };
        let (fit_docs, fit_terms) = pick(fit_part);
        let (held_docs, held_terms) = pick(held);
        let (idf, mut linear, _) = fit(&info, &fit_docs, &fit_terms, cfg);
        let held_x: Vec<SparseVec> = held_terms.iter().map(|t| idf.transform(t)).collect();
        let held_ex: Vec<Example<'_>> = held_x
            .iter()
            .zip(&held_docs)
            .map(|(v, d)| Example {
                idx: &v.idx,
                val: &v.val,
                labels: &d.labels,
            })
            .collect();
        linear.calibrate(&held_ex);
        let temperature = linear.temperature;
        let mut model = Self {
            info: info.clone(),
            idf,
            linear,
        };
        let samples: Vec<Sample> = held_x
            .iter()
            .zip(&held_docs)
            .map(|(x, d)| Sample {
                human: d.labels.iter().map(|&c| info.labels[c].clone()).collect(),
                predicted: model.recommend(&model.linear.predict(&x.idx, &x.val)),
            })
            .collect();
        let m = metrics::compute(&info.labels, info.exclusive, &samples);
        info.metrics = serde_json::json!({
            "held_out_issues": held_docs.len(),
            "macro_f1": m.macro_f1,
            "micro_f1": m.micro_f1,
            "coverage": m.coverage,
            "ece": m.ece,
            "temperature": temperature,
        });
        info.training_ids = docs.iter().map(|d| d.id.clone()).collect();
        model.info = info;
        Ok(model)
    }

    /// The labels recommended from probabilities: the most likely one for an exclusive
    /// taxonomy, every label of probability ≥ 0.5 otherwise; most likely first.
    pub fn recommend(&self, p: &[f32]) -> Vec<(String, f64)> {
        let mut ranked: Vec<(usize, f32)> = p.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let keep: Vec<(usize, f32)> = if self.info.exclusive {
            ranked.into_iter().take(1).collect()
        } else {
            ranked.into_iter().filter(|(_, v)| *v >= 0.5).collect()
        };
        keep.into_iter()
            .map(|(c, v)| (self.info.labels[c].clone(), round2(v)))
            .collect()
    }

    /// Probabilities of every label (taxonomy order); the labels it recommends come with the
    /// issue's terms that pushed them up most (the others' terms stay empty: explaining every
    /// label would cost more than the prediction).
    pub fn predict(&self, text: &Text<'_>) -> Vec<LabelScore> {
        let x = self.idf.transform(&terms(text));
        let p = self.linear.predict(&x.idx, &x.val);
        let k = self.linear.classes;
        let explained: Vec<String> = self.recommend(&p).into_iter().map(|r| r.0).collect();
        // Per explained label, the buckets in order of contribution; their words are looked up
        // once, for these buckets only.
        let ranked: Vec<Option<Vec<u32>>> = (0..k)
            .map(|c| {
                if !explained.contains(&self.info.labels[c]) {
                    return None;
                }
                let mut contrib: Vec<(f32, u32)> = x
                    .idx
                    .iter()
                    .zip(&x.val)
                    .map(|(&f, &v)| {
                        (
                            v * self.linear.w[f as usize * k + c],
                            self.idf.buckets[f as usize],
                        )
                    })
                    .filter(|(s, _)| *s > 0.0)
                    .collect();
                contrib.sort_by(|a, b| b.0.total_cmp(&a.0));
                Some(contrib.into_iter().map(|(_, b)| b).collect())
            })
            .collect();
        // Character n-grams have no readable word: look deeper than five buckets so five words
        // remain when they are among the strongest.
        let wanted: Vec<u32> = ranked
            .iter()
            .flatten()
            .flat_map(|r| r.iter().take(64).copied())
            .collect();
        let words = words_of(text, &wanted);
        (0..k)
            .map(|c| LabelScore {
                label: self.info.labels[c].clone(),
                probability: round2(p[c]),
                terms: ranked[c]
                    .iter()
                    .flatten()
                    .filter_map(|b| words.get(b).cloned())
                    .take(5)
                    .collect(),
            })
            .collect()
    }

    /// The TF-IDF vector in the model's feature space (the few-shot index uses it).
    pub fn vectorize(&self, text: &Text<'_>) -> SparseVec {
        self.idf.transform(&terms(text))
    }

    /// Probabilities only (no explanation): what benchmarks and evaluation need.
    pub fn probabilities(&self, text: &Text<'_>) -> Vec<f32> {
        let x = self.idf.transform(&terms(text));
        self.linear.predict(&x.idx, &x.val)
    }

    /// Where the model of a processor and taxonomy lives under `models_dir`.
    pub fn path(models_dir: &Path, processor: &str, taxonomy_sha256: &str) -> PathBuf {
        let short = taxonomy_sha256.get(..16).unwrap_or(taxonomy_sha256);
        models_dir.join(processor).join(format!("{short}.model"))
    }

    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let header = serde_json::to_vec(&Header {
            info: self.info.clone(),
            softmax: self.linear.mode == Mode::Softmax,
            features: self.idf.len(),
            classes: self.linear.classes,
            temperature: self.linear.temperature,
        })?;
        let mut out =
            Vec::with_capacity(header.len() + 4 * (self.linear.w.len() + 3 * self.idf.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for b in &self.idf.buckets {
            out.extend_from_slice(&b.to_le_bytes());
        }
        for v in self
            .idf
            .idf
            .iter()
            .chain(&self.linear.w)
            .chain(&self.linear.b)
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(out)
    }

    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let bad = |why: &str| user(format!("not a valid local model file: {why}"));
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("unknown format"))?;
        let len = rest
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
            .ok_or_else(|| bad("truncated header"))?;
        let header_bytes = rest
            .get(8..8usize.saturating_add(len))
            .ok_or_else(|| bad("truncated header"))?;
        let h: Header = serde_json::from_slice(header_bytes).map_err(|e| bad(&e.to_string()))?;
        let data = &rest[8 + len..];
        let (n, k) = (h.features, h.classes);
        if k != h.info.labels.len() || k == 0 {
            return Err(bad("label count does not match the weights"));
        }
        let words = n
            .checked_mul(k)
            .and_then(|w| w.checked_add(2 * n + k))
            .ok_or_else(|| bad("sizes overflow"))?;
        if data.len() != words * 4 {
            return Err(bad("weights truncated or padded"));
        }
        let word = |i: usize| -> [u8; 4] { data[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]) };
        let buckets: Vec<u32> = (0..n).map(|i| u32::from_le_bytes(word(i))).collect();
        let floats: Vec<f32> = (n..words).map(|i| f32::from_le_bytes(word(i))).collect();
        if floats.iter().any(|v| !v.is_finite())
            || !h.temperature.is_finite()
            || h.temperature <= 0.0
        {
            return Err(bad("non-finite weights"));
        }
        let idf = Idf::from_pairs(buckets.iter().copied().zip(floats[..n].iter().copied()));
        if idf.len() != n {
            return Err(bad("bucket out of range"));
        }
        let linear = Linear {
            mode: if h.softmax {
                Mode::Softmax
            } else {
                Mode::OneVsRest
            },
            classes: k,
            dim: n,
            w: floats[n..n + n * k].to_vec(),
            b: floats[n + n * k..].to_vec(),
            temperature: h.temperature,
        };
        Ok(Self {
            info: h.info,
            idf,
            linear,
        })
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .user_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::store::atomic::write_atomic(path, &self.to_bytes()?)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .user_context(|| format!("cannot read local model {}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| e.context(format!("in {}", path.display())))
    }
}

// The weights would flood any debug print of a plan.
impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("taxonomy", &self.info.taxonomy_name)
            .field("labels", &self.info.labels.len())
            .field("features", &self.idf.len())
            .field("training_issues", &self.info.training_ids.len())
            .finish()
    }
}

fn round2(v: f32) -> f64 {
    (f64::from(v) * 100.0).round() / 100.0
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
