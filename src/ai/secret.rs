//! `Secret`: an API key that cannot be printed by accident (Debug and Display redact it).

use std::fmt;

/// An API key. The only way to read it is [`Secret::expose`], used where the auth header is
/// built; everything else (logs, errors, `{:?}` of a config) sees `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The key itself, for the one header that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Removes the key, and the masked forms providers echo back (OpenAI's 401 message quotes
    /// `sk-...abcd`), from a text that came from the network before it is shown or stored.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        };
        out = mask_key_like_tokens(&out);
        out
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces words that look like provider keys (`sk-…`, `sk-ant-…`), whole or masked, with `sk-***`.
fn mask_key_like_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("sk-") {
        // Only at a word start: "task-runner" is not a key.
        let at_word_start = rest[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_' && c != '-');
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')))
            .unwrap_or(after.len());
        if at_word_start {
            out.push_str("sk-***");
        } else {
            out.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("sk-live-1234567890");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "sk-live-1234567890");
    }

    #[test]
    fn scrub_removes_whole_and_masked_keys() {
        let s = Secret::new("abc-SECRET-value");
        assert_eq!(s.scrub("bad key abc-SECRET-value!"), "bad key ***!");
        let s = Secret::new("sk-proj-XYZ");
        assert_eq!(
            s.scrub("Incorrect API key provided: sk-proj-****wxyz. You can find"),
            "Incorrect API key provided: sk-***. You can find"
        );
        assert_eq!(s.scrub("task-runner uses sk-"), "task-runner uses sk-***");
        assert_eq!(Secret::new("").scrub("plain"), "plain");
    }
}
