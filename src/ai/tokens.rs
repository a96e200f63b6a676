//! Token counting for budgets and cost estimates (OpenAI's o200k_base, loaded on first use).
//!
//! Exact for current OpenAI models; for Anthropic models it is an estimate (their tokenizer is
//! not public), good enough for a budget and a cost forecast. Real usage is always recorded
//! from the provider's answer.
//!
//! bpe-openai rather than tiktoken-rs: the same tokens (a test compares them on the bundled
//! sample), but its encoder is built at compile time and only deserialised at run time —
//! ~0.1 s on first use instead of ~0.4 s, paid by every command that estimates a network
//! model's tokens.

use bpe_openai::Tokenizer;

fn bpe() -> &'static Tokenizer {
    bpe_openai::o200k_base()
}

/// Tokens in a text. Every token spans at least one byte, so short texts need no tokenizer.
pub fn count(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    bpe().count(text)
}

/// Whether a text certainly fits in `budget` tokens without loading the tokenizer.
pub fn surely_fits(text: &str, budget: usize) -> bool {
    text.len() <= budget
}

/// The longest prefix of `text` within `max_tokens`, cut at a token boundary (and a char
/// boundary), with the number of tokens left out.
pub fn truncate(text: &str, max_tokens: usize) -> (String, usize) {
    if surely_fits(text, max_tokens) {
        return (text.to_string(), 0);
    }
    let tokens = bpe().encode(text);
    if tokens.len() <= max_tokens {
        return (text.to_string(), 0);
    }
    let kept = &tokens[..max_tokens];
    // A token boundary may split a multi-byte character: decode lossily and drop the partial
    // character at the end.
    let bytes = bpe().bpe.decode_tokens(kept);
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    while s.ends_with('\u{FFFD}') {
        s.pop();
    }
    (s, tokens.len() - max_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_truncates_on_token_boundaries() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        let text = "kubectl kots install ".repeat(100);
        let n = count(&text);
        let (cut, omitted) = truncate(&text, 50);
        assert_eq!(count(&cut), 50);
        assert_eq!(omitted, n - 50);
        assert!(text.starts_with(&cut));
        let (same, none) = truncate("short", 50);
        assert_eq!((same.as_str(), none), ("short", 0));
        // Multi-byte text never yields a broken character.
        let (cut, _) = truncate(&"日本語のテキスト".repeat(50), 7);
        assert!(!cut.contains('\u{FFFD}'));
    }

    /// The tokens tiktoken (OpenAI's reference, as tiktoken-rs) counts, on real issue text of
    /// several languages and on the prompt's markup.
    #[test]
    fn counts_what_tiktoken_counts() {
        let reference = tiktoken_rs::o200k_base_singleton();
        let sample = include_str!("../../data/sample/dotnet-corefx-issues.json");
        let web = include_str!("../../data/sample/webcompat-web-bugs.jsonl");
        let texts = [
            sample,
            web,
            "日本語のテキスト ünïcödé — \u{1F600} tabs\tand\r\nlines",
        ];
        for text in texts {
            assert_eq!(count(text), reference.encode_ordinary(text).len());
        }
        for line in sample.lines().chain(web.lines()).take(2_000) {
            assert_eq!(count(line), reference.encode_ordinary(line).len(), "{line}");
        }
    }
}
