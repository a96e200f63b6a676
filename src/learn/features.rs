//! TF-IDF features of an issue with the hashing trick: title words, body/comment words and word
//! bigrams, and character 3–5-grams inside words (robust to identifiers like `HttpClient` vs
//! `HttpClientHandler`), each in its own namespace, hashed into 2^20 buckets. Hashing needs no
//! vocabulary (fast on 50,000 issues, a small model file); the words of an issue are kept next
//! to their buckets so a prediction can name the terms that drove it. docs/quality.md.

use std::collections::HashMap;

/// Buckets of the hashed feature space.
pub const BUCKETS: u32 = 1 << 20;
/// Characters of the body (and of each comment) read: enough to know the topic, bounded cost.
const BODY_CHARS: usize = 6_000;
const COMMENT_CHARS: usize = 1_500;
const MAX_WORD: usize = 40;
/// Body words whose character n-grams are counted (the start of an issue names its subject).
const CHAR_GRAM_WORDS: usize = 300;

/// The text of an issue a model reads.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub comments: &'a [String],
}

/// A sparse vector: sorted, distinct bucket indices and their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVec {
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
}

/// Raw term counts of one issue, and the readable word of each word bucket.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    pub counts: Vec<(u32, f32)>,
    pub words: HashMap<u32, String>,
}

fn fnv(ns: u8, parts: &[&str]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(ns);
    h = h.wrapping_mul(0x0100_0000_01b3);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x20;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // Fold the high bits in: FNV's low bits alone are weak.
    ((h ^ (h >> 32)) as u32) & (BUCKETS - 1)
}

fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Lower-case words: runs of letters, digits and `_`.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_WORD)
        .map(str::to_lowercase)
        .collect()
}

const NS_TITLE: u8 = 1;
const NS_WORD: u8 = 2;
const NS_BIGRAM: u8 = 3;
const NS_CHAR: u8 = 4;

fn char_grams(word: &str, out: &mut Vec<u32>) {
    let padded: Vec<char> = std::iter::once('<')
        .chain(word.chars())
        .chain(std::iter::once('>'))
        .collect();
    let mut buf = String::with_capacity(24);
    for n in 3..=5 {
        for win in padded.windows(n) {
            buf.clear();
            buf.extend(win);
            out.push(fnv(NS_CHAR, &[buf.as_str()]));
        }
    }
}

/// Counts the terms of an issue. `keep_words`: remember the word of each word bucket.
pub fn terms(t: &Text<'_>, keep_words: bool) -> Terms {
    let mut hashes: Vec<u32> = Vec::with_capacity(4096);
    let mut named: HashMap<u32, String> = HashMap::new();
    let title = words(t.title);
    for w in &title {
        let h = fnv(NS_TITLE, &[w.as_str()]);
        hashes.push(h);
        if keep_words {
            named.entry(h).or_insert_with(|| w.clone());
        }
        char_grams(w, &mut hashes);
    }
    let mut text = String::from(cut(t.body, BODY_CHARS));
    for c in t.comments {
        text.push('\n');
        text.push_str(cut(c, COMMENT_CHARS));
    }
    let body = words(&text);
    // Character n-grams of each distinct body word once: they say which identifiers occur,
    // and repeating them per occurrence would multiply the cost for little signal.
    let mut distinct: Vec<&String> = body.iter().take(CHAR_GRAM_WORDS).collect();
    distinct.sort_unstable();
    distinct.dedup();
    for w in distinct {
        char_grams(w, &mut hashes);
    }
    for (i, w) in body.iter().enumerate() {
        let h = fnv(NS_WORD, &[w.as_str()]);
        hashes.push(h);
        if keep_words {
            named.entry(h).or_insert_with(|| w.clone());
        }
        if let Some(next) = body.get(i + 1) {
            let b = fnv(NS_BIGRAM, &[w.as_str(), next.as_str()]);
            hashes.push(b);
            if keep_words {
                named.entry(b).or_insert_with(|| format!("{w} {next}"));
            }
        }
    }
    hashes.sort_unstable();
    let mut counts: Vec<(u32, f32)> = Vec::with_capacity(hashes.len() / 2);
    for h in hashes {
        match counts.last_mut() {
            Some((last, n)) if *last == h => *n += 1.0,
            _ => counts.push((h, 1.0)),
        }
    }
    Terms {
        counts,
        words: named,
    }
}

/// The features learnt from training issues: the buckets seen often enough, numbered densely
/// (so weights take `features × labels`, not `2^20 × labels`), with their inverse document
/// frequency. Unseen buckets neither score nor dilute the norm.
#[derive(Debug, Clone, PartialEq)]
pub struct Idf {
    /// Bucket → feature number (`u32::MAX`: not a feature).
    row: Vec<u32>,
    /// Per feature: its bucket and idf.
    pub buckets: Vec<u32>,
    pub idf: Vec<f32>,
}

impl Idf {
    /// Smoothed idf: ln((1 + n) / (1 + df)) + 1. With 20 issues or more, terms of a single
    /// issue are dropped (noise, and they would only memorise that issue).
    pub fn fit(docs: &[Terms]) -> Self {
        let mut df = vec![0u32; BUCKETS as usize];
        for d in docs {
            for (h, _) in &d.counts {
                df[*h as usize] += 1;
            }
        }
        let n = docs.len() as f32;
        let min_df = if docs.len() >= 20 { 2 } else { 1 };
        let pairs = df
            .iter()
            .enumerate()
            .filter(|(_, d)| **d >= min_df)
            .map(|(h, d)| (h as u32, ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0));
        Self::from_pairs(pairs)
    }

    /// Rebuilds the table from (bucket, idf) pairs in feature order (as a model file keeps it).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u32, f32)>) -> Self {
        let mut row = vec![u32::MAX; BUCKETS as usize];
        let (mut buckets, mut idf) = (Vec::new(), Vec::new());
        for (h, w) in pairs {
            if let Some(slot) = row.get_mut(h as usize) {
                *slot = buckets.len() as u32;
                buckets.push(h);
                idf.push(w);
            }
        }
        Self { row, buckets, idf }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Sub-linear TF × IDF over feature numbers, L2-normalised.
    pub fn transform(&self, t: &Terms) -> SparseVec {
        let mut v = SparseVec::default();
        for (h, n) in &t.counts {
            let f = self.row[*h as usize];
            if f != u32::MAX {
                v.idx.push(f);
                v.val.push((1.0 + n.ln()) * self.idf[f as usize]);
            }
        }
        let norm = v.val.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.val.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    /// The idf of a bucket (0: not a feature).
    pub fn of_bucket(&self, h: u32) -> f32 {
        match self.row.get(h as usize) {
            Some(&f) if f != u32::MAX => self.idf[f as usize],
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(title: &'a str, body: &'a str) -> Text<'a> {
        Text {
            title,
            body,
            comments: &[],
        }
    }

    #[test]
    fn words_are_lower_case_and_titles_have_their_own_namespace() {
        let a = terms(&t("Crash", ""), true);
        let b = terms(&t("", "crash"), true);
        assert!(a.words.values().any(|w| w == "crash"));
        let title_bucket = fnv(NS_TITLE, &["crash"]);
        assert!(a.counts.iter().any(|(h, _)| *h == title_bucket));
        assert!(!b.counts.iter().any(|(h, _)| *h == title_bucket));
        assert!(b.words.values().any(|w| w == "crash"));
    }

    #[test]
    fn counts_are_sorted_and_merged() {
        let x = terms(&t("", "net net net"), false);
        assert!(x.counts.windows(2).all(|w| w[0].0 < w[1].0));
        let word = fnv(NS_WORD, &["net"]);
        assert_eq!(x.counts.iter().find(|(h, _)| *h == word).unwrap().1, 3.0);
    }

    #[test]
    fn tfidf_is_unit_length_and_ignores_unseen_terms() {
        let docs: Vec<Terms> = ["socket timeout", "file path", "socket error"]
            .iter()
            .map(|b| terms(&t("", b), false))
            .collect();
        let idf = Idf::fit(&docs);
        let v = idf.transform(&docs[0]);
        let norm: f32 = v.val.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let unseen = idf.transform(&terms(&t("", "zzzqqq"), false));
        assert!(unseen.idx.is_empty());
        // "socket" is in 2 of 3 documents, "timeout" in 1: rarer terms weigh more.
        let s = idf.of_bucket(fnv(NS_WORD, &["socket"]));
        let tm = idf.of_bucket(fnv(NS_WORD, &["timeout"]));
        assert!(tm > s);
    }
}
