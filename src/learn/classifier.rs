//! A sparse linear classifier: multinomial logistic regression (softmax) for exclusive
//! taxonomies, one-vs-rest logistic regression otherwise, trained by SGD with L2 regularisation
//! (the "scaled weights" trick keeps each step proportional to the non-zero features), then
//! calibrated with one temperature fitted on held-out issues. Hand-written because the linfa
//! family needs dense `ndarray` matrices: 50,000 issues × 2^20 hashed features do not fit dense
//! (docs/quality.md explains the choice).

/// Softmax (exactly one label) or one-vs-rest (any number of labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Softmax,
    OneVsRest,
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    /// L2 regularisation strength.
    pub lambda: f32,
    /// Initial learning rate.
    pub eta0: f32,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            lambda: 2e-5,
            eta0: 0.5,
            seed: 17,
        }
    }
}

/// A training example: its feature vector and the indices of its labels.
#[derive(Debug, Clone)]
pub struct Example<'a> {
    pub idx: &'a [u32],
    pub val: &'a [f32],
    pub labels: &'a [usize],
}

/// The weights of a trained classifier. `w` is feature-major (`w[f * classes + c]`), so a
/// sparse dot product reads one contiguous row per non-zero feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub mode: Mode,
    pub classes: usize,
    pub dim: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// Logits are divided by this before the softmax / sigmoid (calibration).
    pub temperature: f32,
}

/// SplitMix64: a tiny deterministic generator for shuffling (same order on every platform).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn softmax_in_place(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    z.iter_mut().for_each(|v| *v /= sum);
}

impl Linear {
    /// Raw scores (logits) of one example.
    pub fn logits(&self, idx: &[u32], val: &[f32]) -> Vec<f32> {
        let k = self.classes;
        let mut z = self.b.clone();
        for (&f, &x) in idx.iter().zip(val) {
            let f = f as usize;
            if f >= self.dim {
                continue;
            }
            let row = &self.w[f * k..f * k + k];
            for (zc, wc) in z.iter_mut().zip(row) {
                *zc += wc * x;
            }
        }
        z
    }

    /// Calibrated probabilities of one example (sum to 1 for softmax).
    pub fn predict(&self, idx: &[u32], val: &[f32]) -> Vec<f32> {
        let z = self.logits(idx, val);
        self.probabilities(z)
    }

    fn probabilities(&self, mut z: Vec<f32>) -> Vec<f32> {
        let t = self.temperature;
        z.iter_mut().for_each(|v| *v /= t);
        match self.mode {
            Mode::Softmax => softmax_in_place(&mut z),
            Mode::OneVsRest => z.iter_mut().for_each(|v| *v = sigmoid(*v)),
        }
        z
    }

    /// Trains on `examples`; `class_weight[c]` scales the loss of examples labelled `c` (to
    /// keep rare labels from being drowned by frequent ones).
    pub fn train(
        mode: Mode,
        classes: usize,
        dim: usize,
        examples: &[Example<'_>],
        class_weight: &[f32],
        cfg: &TrainConfig,
    ) -> Self {
        let k = classes;
        let mut w = vec![0f32; dim * k];
        let mut b = vec![0f32; k];
        // True weights are `scale * w`: the L2 shrink of every step is one multiplication.
        let mut scale = 1.0f32;
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = Rng::new(cfg.seed);
        let mut t = 0f32;
        let mut z = vec![0f32; k];
        let mut g = vec![0f32; k];
        let mut active: Vec<usize> = Vec::with_capacity(k);
        for _ in 0..cfg.epochs {
            rng.shuffle(&mut order);
            for &i in &order {
                let ex = &examples[i];
                let eta = cfg.eta0 / (1.0 + cfg.eta0 * cfg.lambda * t);
                t += 1.0;
                z.copy_from_slice(&b);
                // Zipped slices: no bounds checks, so the loop over labels vectorises.
                for (&f, &x) in ex.idx.iter().zip(ex.val) {
                    let row = &w[f as usize * k..f as usize * k + k];
                    let xs = x * scale;
                    for (zc, wc) in z.iter_mut().zip(row) {
                        *zc += wc * xs;
                    }
                }
                let weight = ex
                    .labels
                    .iter()
                    .map(|&c| class_weight.get(c).copied().unwrap_or(1.0))
                    .fold(0f32, f32::max)
                    .max(if ex.labels.is_empty() { 1.0 } else { 0.0 });
                match mode {
                    Mode::Softmax => {
                        softmax_in_place(&mut z);
                        g.copy_from_slice(&z);
                        for &c in ex.labels.iter().take(1) {
                            g[c] -= 1.0;
                        }
                    }
                    Mode::OneVsRest => {
                        for c in 0..k {
                            let y = if ex.labels.contains(&c) { 1.0 } else { 0.0 };
                            g[c] = sigmoid(z[c]) - y;
                        }
                    }
                }
                scale *= 1.0 - eta * cfg.lambda;
                let step = eta * weight / scale;
                // Labels whose gradient is negligible (most of them, once the model has learnt
                // something) are skipped: the update then touches only the few that matter.
                active.clear();
                active.extend((0..k).filter(|&c| g[c].abs() >= 1e-3));
                if active.is_empty() {
                    continue;
                }
                for (&f, &x) in ex.idx.iter().zip(ex.val) {
                    let row = &mut w[f as usize * k..f as usize * k + k];
                    let sx = step * x;
                    if active.len() * 2 > k {
                        for (wc, gc) in row.iter_mut().zip(&g) {
                            *wc -= sx * gc;
                        }
                    } else {
                        for &c in &active {
                            row[c] -= sx * g[c];
                        }
                    }
                }
                for c in 0..k {
                    b[c] -= eta * weight * g[c];
                }
                if scale < 1e-3 {
                    w.iter_mut().for_each(|v| *v *= scale);
                    scale = 1.0;
                }
            }
        }
        w.iter_mut().for_each(|v| *v *= scale);
        Self {
            mode,
            classes: k,
            dim,
            w,
            b,
            temperature: 1.0,
        }
    }

    /// Mean negative log-likelihood of `examples` at temperature `t`.
    fn nll(&self, logits: &[(Vec<f32>, &[usize])], t: f32) -> f64 {
        let mut total = 0f64;
        for (z, labels) in logits {
            let scaled: Vec<f32> = z.iter().map(|v| v / t).collect();
            match self.mode {
                Mode::Softmax => {
                    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let lse = scaled
                        .iter()
                        .map(|v| ((v - max) as f64).exp())
                        .sum::<f64>()
                        .ln()
                        + max as f64;
                    if let Some(&c) = labels.first() {
                        total += lse - scaled[c] as f64;
                    }
                }
                Mode::OneVsRest => {
                    for (c, &v) in scaled.iter().enumerate() {
                        let y = labels.contains(&c);
                        // log(1 + e^-v) for positives, log(1 + e^v) for negatives, stably.
                        let s = f64::from(if y { -v } else { v });
                        total += s.max(0.0) + (1.0 + (-s.abs()).exp()).ln();
                    }
                }
            }
        }
        total / logits.len().max(1) as f64
    }

    /// Fits the temperature minimising the NLL of held-out examples (golden-section search
    /// over log T in [-3, 3]): over-confident models get T > 1, timid ones T < 1.
    pub fn calibrate(&mut self, held_out: &[Example<'_>]) {
        if held_out.is_empty() {
            return;
        }
        let logits: Vec<(Vec<f32>, &[usize])> = held_out
            .iter()
            .map(|e| (self.logits(e.idx, e.val), e.labels))
            .collect();
        let f = |lt: f64| self.nll(&logits, lt.exp() as f32);
        let (mut a, mut b) = (-3.0f64, 3.0f64);
        let r = (5f64.sqrt() - 1.0) / 2.0;
        let mut c = b - r * (b - a);
        let mut d = a + r * (b - a);
        let (mut fc, mut fd) = (f(c), f(d));
        for _ in 0..60 {
            if fc < fd {
                b = d;
                d = c;
                fd = fc;
                c = b - r * (b - a);
                fc = f(c);
            } else {
                a = c;
                c = d;
                fc = fd;
                d = a + r * (b - a);
                fd = f(d);
            }
        }
        self.temperature = ((a + b) / 2.0).exp() as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (feature indices, values, labels) of one example.
    type Row = (Vec<u32>, Vec<f32>, Vec<usize>);

    /// Three classes, each signalled by its own feature (plus a shared noise feature).
    fn separable(n: usize) -> (Vec<Row>, usize) {
        let mut out = Vec::new();
        for i in 0..n {
            let c = i % 3;
            out.push((vec![c as u32, 10], vec![0.9, 0.43], vec![c]));
        }
        (out, 3)
    }

    fn examples(d: &[Row]) -> Vec<Example<'_>> {
        d.iter()
            .map(|(i, v, l)| Example {
                idx: i,
                val: v,
                labels: l,
            })
            .collect()
    }

    #[test]
    fn softmax_learns_a_separable_set_and_probabilities_sum_to_one() {
        let (d, k) = separable(60);
        let ex = examples(&d);
        let m = Linear::train(
            Mode::Softmax,
            k,
            16,
            &ex,
            &[1.0; 3],
            &TrainConfig::default(),
        );
        for e in &ex {
            let p = m.predict(e.idx, e.val);
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            let best = (0..k).max_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap();
            assert_eq!(best, e.labels[0]);
        }
    }

    #[test]
    fn one_vs_rest_learns_several_labels_per_example() {
        let d: Vec<_> = (0..80)
            .map(|i| {
                let a = i % 2 == 0;
                let b = i % 4 < 2;
                let mut labels = vec![];
                if a {
                    labels.push(0);
                }
                if b {
                    labels.push(1);
                }
                (
                    vec![u32::from(!a), 2 + u32::from(!b)],
                    vec![0.7, 0.7],
                    labels,
                )
            })
            .collect();
        let ex = examples(&d);
        let m = Linear::train(
            Mode::OneVsRest,
            2,
            8,
            &ex,
            &[1.0; 2],
            &TrainConfig::default(),
        );
        for e in &ex {
            let p = m.predict(e.idx, e.val);
            for c in 0..2 {
                assert_eq!(p[c] > 0.5, e.labels.contains(&c), "{:?} {p:?}", e.labels);
            }
        }
    }

    #[test]
    fn calibration_softens_an_overconfident_model_on_noisy_labels() {
        // Feature 0 says class 0, but a third of the held-out examples are class 1.
        let train: Vec<_> = (0..50)
            .map(|_| (vec![0u32], vec![1.0f32], vec![0usize]))
            .collect();
        let mut train = train;
        train.extend((0..50).map(|_| (vec![1u32], vec![1.0f32], vec![1usize])));
        let ex = examples(&train);
        let mut m = Linear::train(Mode::Softmax, 2, 4, &ex, &[1.0; 2], &TrainConfig::default());
        let before = m.predict(&[0], &[1.0])[0];
        let held: Vec<_> = (0..30)
            .map(|i| (vec![0u32], vec![1.0f32], vec![usize::from(i % 3 == 0)]))
            .collect();
        m.calibrate(&examples(&held));
        let after = m.predict(&[0], &[1.0])[0];
        assert!(before > 0.9, "{before}");
        assert!((after - 2.0 / 3.0).abs() < 0.05, "{after}");
        assert!(m.temperature > 1.0);
    }

    #[test]
    fn the_shuffle_is_deterministic() {
        let mut a: Vec<u32> = (0..20).collect();
        let mut b = a.clone();
        Rng::new(5).shuffle(&mut a);
        Rng::new(5).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..20).collect::<Vec<_>>());
    }
}
