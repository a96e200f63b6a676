//! Reading import files: JSON arrays, single objects, JSON Lines and concatenated pages (the
//! output of `gh api --paginate`), holding REST issues, search results or StoredIssues. Files
//! are streamed item by item ([`split`]) and loaded in chunks ([`load`]), so memory stays flat
//! whatever the file's size.

pub mod load;
pub mod split;

use serde_json::Value;

use crate::github::models::RestIssue;
use crate::store::{parse_issue, StoredIssue};

pub use load::{import, ImportReport, Source};

/// One element of an import file, converted.
#[derive(Debug)]
pub enum Item {
    Issue(Box<StoredIssue>),
    PullRequest,
    Invalid(String),
}

/// The values one split item holds: itself, or the elements of a page (array) or of a search
/// response's `items`.
pub fn values_of(raw: &[u8]) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut out = Vec::new();
    flatten(v, &mut out);
    Ok(out)
}

fn flatten(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
        // A search response: {"total_count", "incomplete_results", "items": [...]}.
        Value::Object(mut m)
            if m.get("items").is_some_and(Value::is_array) && !m.contains_key("number") =>
        {
            if let Some(items) = m.remove("items") {
                flatten(items, out);
            }
        }
        other => out.push(other),
    }
}

/// Converts one value; `fallback` names the repository for issues without `repository_url`.
pub fn convert(v: Value, fallback: Option<(&str, &str)>) -> Item {
    if v.get("issue").is_some() && v.get("org").is_some() {
        let bytes = v.to_string();
        return match parse_issue(std::path::Path::new("item"), bytes.as_bytes()) {
            Ok(s) => Item::Issue(Box::new(s)),
            Err(e) => Item::Invalid(e.to_string().trim_start_matches("item: ").to_string()),
        };
    }
    let rest: RestIssue = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => return Item::Invalid(format!("not a GitHub issue object: {e}")),
    };
    if rest.is_pull_request() {
        return Item::PullRequest;
    }
    let Some((org, repo)) = rest
        .repository()
        .or_else(|| fallback.map(|(o, r)| (o.to_string(), r.to_string())))
    else {
        return Item::Invalid(format!(
            "issue #{} has no repository_url; pass --org and --repo",
            rest.number
        ));
    };
    match rest.into_stored(org, repo) {
        Ok(s) => Item::Issue(Box::new(s)),
        Err(e) => Item::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_responses_and_nested_pages_are_flattened() {
        let d = values_of(br#"{"total_count":2,"items":[{"a":1},{"a":2}]}"#).unwrap();
        let e = values_of(br#"[{"a":1},[{"a":2}]]"#).unwrap();
        assert_eq!(
            d,
            vec![serde_json::json!({"a":1}), serde_json::json!({"a":2})]
        );
        assert_eq!(d, e);
        assert!(values_of(b"{oops").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn repository_comes_from_the_url_also_on_enterprise_server() {
        for (url, org, repo) in [
            (
                "https://api.github.com/repos/rust-lang/rust",
                "rust-lang",
                "rust",
            ),
            (
                "https://ghe.example.com/api/v3/repos/my_org/my.repo",
                "my_org",
                "my.repo",
            ),
        ] {
            let v = serde_json::json!({"number":1,"title":"t","state":"open","repository_url":url});
            let Item::Issue(s) = convert(v, None) else {
                panic!()
            };
            assert_eq!((s.org.as_str(), s.repo.as_str()), (org, repo));
        }
    }

    #[test]
    fn pull_requests_are_recognised_and_bad_names_refused() {
        let pr = serde_json::json!({"number":1,"title":"t","state":"open",
            "repository_url":"https://api.github.com/repos/o/r","pull_request":{"url":"x"}});
        assert!(matches!(convert(pr, None), Item::PullRequest));
        let bad = serde_json::json!({"number":1,"title":"t","state":"open",
            "repository_url":"https://api.github.com/repos/../x"});
        assert!(matches!(convert(bad, None), Item::Invalid(_)));
        let none = serde_json::json!({"number":1,"title":"t","state":"open"});
        assert!(matches!(
            convert(none, Some(("o", "../r"))),
            Item::Invalid(_)
        ));
    }
}
