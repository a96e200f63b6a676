//! TF-IDF features of an issue with the hashing trick: title words, body/comment words and word
//! bigrams, and character 3–5-grams inside words (robust to identifiers like `HttpClient` vs
//! `HttpClientHandler`), each in its own namespace, hashed into 2^20 buckets. Hashing needs no
//! vocabulary (fast on 50,000 issues, a small model file); the words of an issue are kept next
//! to their buckets so a prediction can name the terms that drove it. docs/quality.md.

use std::borrow::Cow;
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

/// Raw term counts of one issue.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    pub counts: Vec<(u32, f32)>,
}

/// FNV-1a over a namespace byte and `\x20`-separated parts, fed incrementally so character
/// n-grams need no string of their own.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const PRIME: u64 = 0x0100_0000_01b3;

    fn new(ns: u8) -> Self {
        Self((0xcbf2_9ce4_8422_2325 ^ u64::from(ns)).wrapping_mul(Self::PRIME))
    }

    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// The bucket. Folds the high bits in: FNV's low bits alone are weak.
    fn bucket(self) -> u32 {
        ((self.0 ^ (self.0 >> 32)) as u32) & (BUCKETS - 1)
    }
}

fn fnv(ns: u8, parts: &[&str]) -> u32 {
    let mut h = Fnv::new(ns);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.feed(b" ");
        }
        h.feed(p.as_bytes());
    }
    h.bucket()
}

fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Lower-case words: runs of letters, digits and `_` (borrowed when already lower case: most
/// words are, and an allocation per word was a third of a prediction's time).
fn words(s: &str) -> Vec<Cow<'_, str>> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_WORD)
        .map(|w| {
            if w.chars().any(char::is_uppercase) {
                Cow::Owned(w.to_lowercase())
            } else {
                Cow::Borrowed(w)
            }
        })
        .collect()
}

const NS_TITLE: u8 = 1;
const NS_WORD: u8 = 2;
const NS_BIGRAM: u8 = 3;
const NS_CHAR: u8 = 4;

/// The 3-, 4- and 5-grams of `<word>`, hashed as they are read (same buckets as hashing each
/// n-gram's string). `chars` is a reused buffer.
fn char_grams(word: &str, chars: &mut Vec<[u8; 4]>, lens: &mut Vec<u8>, out: &mut Vec<u32>) {
    chars.clear();
    lens.clear();
    let mut push = |c: char| {
        let mut b = [0u8; 4];
        let n = c.encode_utf8(&mut b).len();
        chars.push(b);
        lens.push(n as u8);
    };
    push('<');
    word.chars().for_each(&mut push);
    push('>');
    for start in 0..chars.len() {
        let mut h = Fnv::new(NS_CHAR);
        for (n, j) in (start..chars.len().min(start + 5)).enumerate() {
            h.feed(&chars[j][..usize::from(lens[j])]);
            if n >= 2 {
                out.push(h.bucket());
            }
        }
    }
}

/// Cuts the body and the comments to what a model reads, as one text.
fn body_text(t: &Text<'_>) -> String {
    let mut text = String::from(cut(t.body, BODY_CHARS));
    for c in t.comments {
        text.push('\n');
        text.push_str(cut(c, COMMENT_CHARS));
    }
    text
}

/// Counts the terms of an issue.
pub fn terms(t: &Text<'_>) -> Terms {
    let mut hashes: Vec<u32> = Vec::with_capacity(4096);
    let (mut chars, mut lens) = (Vec::with_capacity(48), Vec::with_capacity(48));
    for w in words(t.title) {
        hashes.push(fnv(NS_TITLE, &[&*w]));
        char_grams(&w, &mut chars, &mut lens, &mut hashes);
    }
    let text = body_text(t);
    let body = words(&text);
    // Character n-grams of each distinct body word once: they say which identifiers occur,
    // and repeating them per occurrence would multiply the cost for little signal.
    let mut distinct: Vec<&str> = body.iter().take(CHAR_GRAM_WORDS).map(|w| &**w).collect();
    distinct.sort_unstable();
    distinct.dedup();
    for w in distinct {
        char_grams(w, &mut chars, &mut lens, &mut hashes);
    }
    for (i, w) in body.iter().enumerate() {
        hashes.push(fnv(NS_WORD, &[&**w]));
        if let Some(next) = body.get(i + 1) {
            hashes.push(fnv(NS_BIGRAM, &[&**w, &**next]));
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
    Terms { counts }
}

/// The readable word (or word pair) of each of `buckets` that is a title word, body word or
/// bigram of the issue. Called only for the few buckets a prediction names, so a prediction
/// does not keep a string for every term.
pub fn words_of(t: &Text<'_>, buckets: &[u32]) -> HashMap<u32, String> {
    let mut named = HashMap::new();
    if buckets.is_empty() {
        return named;
    }
    for w in words(t.title) {
        let h = fnv(NS_TITLE, &[&*w]);
        if buckets.contains(&h) {
            named.entry(h).or_insert_with(|| w.to_string());
        }
    }
    let text = body_text(t);
    let body = words(&text);
    for (i, w) in body.iter().enumerate() {
        let h = fnv(NS_WORD, &[&**w]);
        if buckets.contains(&h) {
            named.entry(h).or_insert_with(|| w.to_string());
        }
        if let Some(next) = body.get(i + 1) {
            let b = fnv(NS_BIGRAM, &[&**w, &**next]);
            if buckets.contains(&b) {
                named.entry(b).or_insert_with(|| format!("{w} {next}"));
            }
        }
    }
    named
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
        let a = terms(&t("Crash", ""));
        let b = terms(&t("", "crash"));
        let title_bucket = fnv(NS_TITLE, &["crash"]);
        let word_bucket = fnv(NS_WORD, &["crash"]);
        assert!(a.counts.iter().any(|(h, _)| *h == title_bucket));
        assert!(!b.counts.iter().any(|(h, _)| *h == title_bucket));
        assert!(b.counts.iter().any(|(h, _)| *h == word_bucket));
        let named = words_of(&t("Crash", ""), &[title_bucket, word_bucket]);
        assert_eq!(named.get(&title_bucket).map(String::as_str), Some("crash"));
        assert!(!named.contains_key(&word_bucket));
        let named = words_of(
            &t("", "Socket crash"),
            &[fnv(NS_BIGRAM, &["socket", "crash"])],
        );
        assert_eq!(
            named.values().next().map(String::as_str),
            Some("socket crash")
        );
    }

    /// Saved models hold buckets: the incremental n-gram hash must equal hashing each n-gram's
    /// string, as the first models were built.
    #[test]
    fn character_ngrams_hash_like_their_strings() {
        let word = "héllo_wörld";
        let padded: Vec<char> = format!("<{word}>").chars().collect();
        let mut expected: Vec<u32> = (3..=5)
            .flat_map(|n| {
                padded
                    .windows(n)
                    .map(|w| w.iter().collect::<String>())
                    .collect::<Vec<_>>()
            })
            .map(|g| fnv(NS_CHAR, &[g.as_str()]))
            .collect();
        let mut got = Vec::new();
        char_grams(word, &mut Vec::new(), &mut Vec::new(), &mut got);
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
        // The separator of parts is one space, as before.
        assert_eq!(fnv(NS_BIGRAM, &["a", "b"]), fnv(NS_BIGRAM, &["a b"]));
    }

    #[test]
    fn counts_are_sorted_and_merged() {
        let x = terms(&t("", "net net net"));
        assert!(x.counts.windows(2).all(|w| w[0].0 < w[1].0));
        let word = fnv(NS_WORD, &["net"]);
        assert_eq!(x.counts.iter().find(|(h, _)| *h == word).unwrap().1, 3.0);
    }

    #[test]
    fn tfidf_is_unit_length_and_ignores_unseen_terms() {
        let docs: Vec<Terms> = ["socket timeout", "file path", "socket error"]
            .iter()
            .map(|b| terms(&t("", b)))
            .collect();
        let idf = Idf::fit(&docs);
        let v = idf.transform(&docs[0]);
        let norm: f32 = v.val.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let unseen = idf.transform(&terms(&t("", "zzzqqq")));
        assert!(unseen.idx.is_empty());
        // "socket" is in 2 of 3 documents, "timeout" in 1: rarer terms weigh more.
        let s = idf.of_bucket(fnv(NS_WORD, &["socket"]));
        let tm = idf.of_bucket(fnv(NS_WORD, &["timeout"]));
        assert!(tm > s);
    }
}
