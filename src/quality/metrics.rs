//! Quality metrics of predicted labels against human labels: per-label precision / recall / F1,
//! micro and macro F1, coverage, the confusion matrix of exclusive taxonomies, precision and
//! coverage per confidence threshold, expected calibration error with its reliability table, and
//! the lowest threshold at which each label is precise enough to apply automatically.
//! Definitions are in docs/quality.md; everything here is pure.

use serde::Serialize;

/// One evaluated issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Human labels of the taxonomy.
    pub human: Vec<String>,
    /// Predicted labels with their confidence (0–1).
    pub predicted: Vec<(String, f64)>,
}

/// Bins of the expected calibration error (equal width over 0–1).
pub const ECE_BINS: usize = 15;
/// Precision a label must reach before it may be applied without review.
pub const SAFE_PRECISION: f64 = 0.9;
/// Recall a label must keep at that precision, or auto-applying it would miss most issues.
pub const SAFE_RECALL: f64 = 0.5;
/// The label of "no prediction" in the confusion matrix.
pub const NONE: &str = "(none)";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Issues with this human label.
    pub support: u64,
    /// Issues predicted with this label.
    pub predicted: u64,
    /// Lowest confidence threshold at which this label's precision is ≥ 0.9 (None: never).
    pub safe_threshold: Option<f64>,
    /// Recall at that threshold.
    pub recall_at_safe_threshold: Option<f64>,
    /// Precision ≥ 0.9 with recall ≥ 0.5 at some threshold.
    pub safe_to_auto_apply: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdPoint {
    pub threshold: f64,
    /// Of the predictions with at least this confidence, the share that is right (None: none).
    pub precision: Option<f64>,
    /// Share of issues with at least one prediction of at least this confidence.
    pub coverage: f64,
    pub predictions: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub mean_confidence: Option<f64>,
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// Row and column names: the taxonomy's labels, then `(none)` (columns only get predictions).
    pub labels: Vec<String>,
    /// `cells[human][predicted]`: issue counts.
    pub cells: Vec<Vec<u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub issues: u64,
    pub exclusive: bool,
    pub labels: Vec<LabelMetrics>,
    pub micro_f1: f64,
    /// Mean F1 of the labels with support (labels no issue has are left out).
    pub macro_f1: f64,
    /// Share of issues with at least one prediction.
    pub coverage: f64,
    /// Expected calibration error over the predictions (15 bins); None without predictions.
    pub ece: Option<f64>,
    pub reliability: Vec<ReliabilityBin>,
    pub thresholds: Vec<ThresholdPoint>,
    pub confusion: Option<Confusion>,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// The predictions that count: all of them, or only the most confident for an exclusive
/// taxonomy (ties go to the label listed first).
fn effective(s: &Sample, exclusive: bool) -> Vec<(String, f64)> {
    let mut p = s.predicted.clone();
    if exclusive && p.len() > 1 {
        let best = p
            .iter()
            .enumerate()
            .fold(0, |b, (i, x)| if x.1 > p[b].1 { i } else { b });
        p = vec![p.swap_remove(best)];
    }
    p
}

/// Computes every metric of `samples` over the taxonomy `labels`.
pub fn compute(labels: &[String], exclusive: bool, samples: &[Sample]) -> Metrics {
    let n = samples.len() as u64;
    let preds: Vec<Vec<(String, f64)>> = samples.iter().map(|s| effective(s, exclusive)).collect();
    // Every prediction with its confidence and whether it is right.
    let mut scored: Vec<(f64, bool)> = Vec::new();
    let mut per_label: Vec<LabelMetrics> = Vec::with_capacity(labels.len());
    let (mut tp_all, mut fp_all, mut fn_all) = (0u64, 0u64, 0u64);
    for label in labels {
        let mut hits: Vec<(f64, bool)> = Vec::new();
        let mut support = 0u64;
        for (s, p) in samples.iter().zip(&preds) {
            let truth = s.human.iter().any(|h| h == label);
            support += u64::from(truth);
            if let Some((_, c)) = p.iter().find(|(l, _)| l == label) {
                hits.push((*c, truth));
            }
        }
        let tp = hits.iter().filter(|h| h.1).count() as u64;
        let predicted = hits.len() as u64;
        let (fp, fneg) = (predicted - tp, support - tp);
        tp_all += tp;
        fp_all += fp;
        fn_all += fneg;
        let precision = ratio(tp, predicted).unwrap_or(0.0);
        let recall = ratio(tp, support).unwrap_or(0.0);
        let safe = safe_threshold(&hits, support);
        per_label.push(LabelMetrics {
            label: label.clone(),
            precision,
            recall,
            f1: f1(precision, recall),
            support,
            predicted,
            safe_threshold: safe.map(|s| s.0),
            recall_at_safe_threshold: safe.map(|s| s.1),
            safe_to_auto_apply: safe.is_some_and(|s| s.1 >= SAFE_RECALL),
        });
        scored.extend(hits);
    }
    let micro_p = ratio(tp_all, tp_all + fp_all).unwrap_or(0.0);
    let micro_r = ratio(tp_all, tp_all + fn_all).unwrap_or(0.0);
    let supported: Vec<f64> = per_label
        .iter()
        .filter(|l| l.support > 0)
        .map(|l| l.f1)
        .collect();
    let macro_f1 = if supported.is_empty() {
        0.0
    } else {
        supported.iter().sum::<f64>() / supported.len() as f64
    };
    let covered = preds.iter().filter(|p| !p.is_empty()).count() as u64;
    let (ece, reliability) = calibration(&scored);
    Metrics {
        issues: n,
        exclusive,
        labels: per_label,
        micro_f1: f1(micro_p, micro_r),
        macro_f1,
        coverage: ratio(covered, n).unwrap_or(0.0),
        ece,
        reliability,
        thresholds: threshold_curve(labels, samples, &preds),
        confusion: exclusive.then(|| confusion(labels, samples, &preds)),
    }
}

/// Lowest confidence `t` among the label's predictions where precision of those ≥ t reaches
/// [`SAFE_PRECISION`], with the recall there.
fn safe_threshold(hits: &[(f64, bool)], support: u64) -> Option<(f64, f64)> {
    let mut sorted = hits.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut seen, mut best) = (0u64, 0u64, None);
    let mut i = 0;
    while i < sorted.len() {
        // All predictions with the same confidence enter together.
        let t = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == t {
            tp += u64::from(sorted[i].1);
            seen += 1;
            i += 1;
        }
        if tp as f64 / seen as f64 >= SAFE_PRECISION {
            best = Some((t, ratio(tp, support).unwrap_or(0.0)));
        }
    }
    best
}

/// ECE over 15 equal-width bins (a confidence of exactly 1 falls in the last) and the table.
fn calibration(scored: &[(f64, bool)]) -> (Option<f64>, Vec<ReliabilityBin>) {
    let mut count = [0u64; ECE_BINS];
    let mut conf = [0f64; ECE_BINS];
    let mut right = [0u64; ECE_BINS];
    for &(c, ok) in scored {
        let b = ((c.clamp(0.0, 1.0) * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        count[b] += 1;
        conf[b] += c;
        right[b] += u64::from(ok);
    }
    let total = scored.len() as f64;
    let mut ece = 0.0;
    let bins = (0..ECE_BINS)
        .map(|b| {
            let mean_confidence = (count[b] > 0).then(|| conf[b] / count[b] as f64);
            let accuracy = ratio(right[b], count[b]);
            if let (Some(c), Some(a)) = (mean_confidence, accuracy) {
                ece += count[b] as f64 / total * (a - c).abs();
            }
            ReliabilityBin {
                lower: b as f64 / ECE_BINS as f64,
                upper: (b + 1) as f64 / ECE_BINS as f64,
                count: count[b],
                mean_confidence,
                accuracy,
            }
        })
        .collect();
    ((!scored.is_empty()).then_some(ece), bins)
}

/// Precision and coverage at thresholds 0, 0.05, …, 1.
fn threshold_curve(
    labels: &[String],
    samples: &[Sample],
    preds: &[Vec<(String, f64)>],
) -> Vec<ThresholdPoint> {
    (0..=20)
        .map(|k| {
            let t = k as f64 / 20.0;
            let (mut right, mut all, mut covered) = (0u64, 0u64, 0u64);
            for (s, p) in samples.iter().zip(preds) {
                let kept: Vec<&(String, f64)> = p
                    .iter()
                    .filter(|(l, c)| *c >= t - 1e-12 && labels.contains(l))
                    .collect();
                covered += u64::from(!kept.is_empty());
                all += kept.len() as u64;
                right += kept.iter().filter(|(l, _)| s.human.contains(l)).count() as u64;
            }
            ThresholdPoint {
                threshold: t,
                precision: ratio(right, all),
                coverage: ratio(covered, samples.len() as u64).unwrap_or(0.0),
                predictions: all,
            }
        })
        .collect()
}

/// Human label (the first of the taxonomy's on the issue) against the predicted one.
fn confusion(labels: &[String], samples: &[Sample], preds: &[Vec<(String, f64)>]) -> Confusion {
    let mut names = labels.to_vec();
    names.push(NONE.to_string());
    let k = labels.len();
    let mut cells = vec![vec![0u64; k + 1]; k];
    for (s, p) in samples.iter().zip(preds) {
        let Some(h) = labels.iter().position(|l| s.human.contains(l)) else {
            continue;
        };
        let col = p
            .first()
            .and_then(|(l, _)| labels.iter().position(|x| x == l))
            .unwrap_or(k);
        cells[h][col] += 1;
    }
    Confusion {
        labels: names,
        cells,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(human: &[&str], predicted: &[(&str, f64)]) -> Sample {
        Sample {
            human: human.iter().map(|x| x.to_string()).collect(),
            predicted: predicted.iter().map(|(l, c)| (l.to_string(), *c)).collect(),
        }
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|x| x.to_string()).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    /// Hand-computed: a is on #1–#4 and predicted on #1–#3: TP 3, FP 0, FN 1 → P 1, R 0.75,
    /// F1 6/7. b: TP 1 → F1 1. c has no support and stays out of macro-F1 = (6/7 + 1) / 2.
    /// Micro: TP 4, FP 0, FN 1 → P 1, R 0.8. Coverage: 3 of 4 issues have a prediction.
    #[test]
    fn precision_recall_f1_micro_macro_and_coverage_by_hand() {
        let l = labels(&["a", "b", "c"]);
        let samples = [
            s(&["a"], &[("a", 0.9)]),
            s(&["a"], &[("a", 0.8)]),
            s(&["b", "a"], &[("b", 0.7), ("a", 0.6)]),
            s(&["a"], &[]),
        ];
        let m = compute(&l, false, &samples);
        close(m.labels[0].precision, 1.0);
        close(m.labels[0].recall, 0.75);
        close(m.labels[0].f1, 2.0 * 0.75 / 1.75);
        assert_eq!((m.labels[0].support, m.labels[0].predicted), (4, 3));
        close(m.labels[1].f1, 1.0);
        assert_eq!(m.labels[2].support, 0);
        close(m.macro_f1, (2.0 * 0.75 / 1.75 + 1.0) / 2.0);
        close(m.micro_f1, 2.0 * 0.8 / 1.8);
        close(m.coverage, 0.75);
        assert!(m.confusion.is_none());
    }

    #[test]
    fn exclusive_taxonomies_score_the_top_prediction_and_fill_the_confusion_matrix() {
        let l = labels(&["bug", "feature"]);
        let samples = [
            s(&["bug"], &[("feature", 0.4), ("bug", 0.6)]),
            s(&["bug"], &[("feature", 0.7)]),
            s(&["feature"], &[("feature", 0.9)]),
            s(&["feature"], &[]),
        ];
        let m = compute(&l, true, &samples);
        // bug: TP 1, FP 0, FN 1 → P 1, R .5; feature: TP 1, FP 1, FN 1 → P .5 R .5.
        close(m.labels[0].precision, 1.0);
        close(m.labels[0].recall, 0.5);
        close(m.labels[1].precision, 0.5);
        close(m.labels[1].recall, 0.5);
        let c = m.confusion.unwrap();
        assert_eq!(c.labels, ["bug", "feature", NONE]);
        assert_eq!(c.cells, vec![vec![1, 1, 0], vec![0, 1, 1]]);
    }

    /// Predictions (conf, right): (0.95 ✓)(0.95 ✗)(0.5 ✓)(0.1 ✗). Bins of 1/15: 0.95 → bin 14,
    /// 0.5 → bin 7, 0.1 → bin 1. ECE = 2/4·|0.5−0.95| + 1/4·|1−0.5| + 1/4·|0−0.1| = 0.375.
    #[test]
    fn ece_and_reliability_table_by_hand() {
        let l = labels(&["a", "b"]);
        let samples = [
            s(&["a"], &[("a", 0.95)]),
            s(&["b"], &[("a", 0.95)]),
            s(&["b"], &[("b", 0.5)]),
            s(&["a"], &[("b", 0.1)]),
        ];
        let m = compute(&l, false, &samples);
        close(m.ece.unwrap(), 0.375);
        assert_eq!(m.reliability.len(), ECE_BINS);
        assert_eq!(m.reliability[14].count, 2);
        close(m.reliability[14].accuracy.unwrap(), 0.5);
        assert_eq!(m.reliability[7].count, 1);
        assert_eq!(m.reliability[0].count, 0);
        assert!(m.reliability[0].accuracy.is_none());
        // A confidence of exactly 1 lands in the last bin.
        let one = compute(&l, false, &[s(&["a"], &[("a", 1.0)])]);
        assert_eq!(one.reliability[14].count, 1);
        close(one.ece.unwrap(), 0.0);
    }

    /// Label a, by confidence: 0.9 ✓, 0.8 ✓, 0.7 ✗, 0.6 ✓, 0.3 ✗ (support 5).
    /// Precision ≥ t: 1 (0.9), 1 (0.8), 2/3, 3/4, 3/5 → lowest t with ≥ 0.9 is 0.8, recall 2/5
    /// there: not safe. Label b: 0.5 ✓ (support 1) → t 0.5, recall 1: safe.
    #[test]
    fn lowest_safe_threshold_and_the_recall_gate() {
        let l = labels(&["a", "b"]);
        let samples = [
            s(&["a"], &[("a", 0.9)]),
            s(&["a"], &[("a", 0.8)]),
            s(&["c"], &[("a", 0.7)]),
            s(&["a"], &[("a", 0.6)]),
            s(&["c"], &[("a", 0.3)]),
            s(&["a"], &[]),
            s(&["b", "a"], &[("b", 0.5)]),
        ];
        let m = compute(&l, false, &samples);
        let a = &m.labels[0];
        assert_eq!(a.support, 5);
        close(a.safe_threshold.unwrap(), 0.8);
        close(a.recall_at_safe_threshold.unwrap(), 0.4);
        assert!(!a.safe_to_auto_apply);
        let b = &m.labels[1];
        close(b.safe_threshold.unwrap(), 0.5);
        assert!(b.safe_to_auto_apply);
        // Never precise enough: no threshold.
        let bad = compute(&l, false, &[s(&["b"], &[("a", 0.9)])]);
        assert!(bad.labels[0].safe_threshold.is_none());
        assert!(!bad.labels[0].safe_to_auto_apply);
    }

    #[test]
    fn precision_and_coverage_per_threshold() {
        let l = labels(&["a"]);
        let samples = [
            s(&["a"], &[("a", 0.9)]),
            s(&["x"], &[("a", 0.4)]),
            s(&["a"], &[]),
        ];
        let m = compute(&l, false, &samples);
        assert_eq!(m.thresholds.len(), 21);
        let at = |t: f64| {
            m.thresholds
                .iter()
                .find(|p| (p.threshold - t).abs() < 1e-9)
                .unwrap()
        };
        close(at(0.0).precision.unwrap(), 0.5);
        close(at(0.0).coverage, 2.0 / 3.0);
        close(at(0.5).precision.unwrap(), 1.0);
        close(at(0.5).coverage, 1.0 / 3.0);
        assert!(at(0.95).precision.is_none());
        close(at(0.95).coverage, 0.0);
    }

    #[test]
    fn no_samples_is_all_zero_not_a_panic() {
        let m = compute(&labels(&["a"]), true, &[]);
        assert_eq!(m.issues, 0);
        assert_eq!(m.macro_f1, 0.0);
        assert!(m.ece.is_none());
    }
}
