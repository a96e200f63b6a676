//! Token counting for budgets and cost estimates (tiktoken's o200k_base, loaded on first use).
//!
//! Exact for current OpenAI models; for Anthropic models it is an estimate (their tokenizer is
//! not public), good enough for a budget and a cost forecast. Real usage is always recorded
//! from the provider's answer.

use tiktoken_rs::CoreBPE;

fn bpe() -> &'static CoreBPE {
    tiktoken_rs::o200k_base_singleton()
}

/// Tokens in a text. Every token spans at least one byte, so short texts need no tokenizer.
pub fn count(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    bpe().encode_ordinary(text).len()
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
    let tokens = bpe().encode_ordinary(text);
    if tokens.len() <= max_tokens {
        return (text.to_string(), 0);
    }
    let kept = &tokens[..max_tokens];
    // A token boundary may split a multi-byte character: decode lossily and drop the partial
    // character at the end.
    let bytes = bpe().decode_bytes(kept).unwrap_or_default();
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
}
