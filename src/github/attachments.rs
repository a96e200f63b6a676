//! Attachments linked from issue bodies and comments (user-images, user-attachments, `/files/`):
//! finding their URLs and downloading them under `attachments/` with a size cap.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use crate::db::AttachmentRow;
use crate::github::client::Client;
use crate::store::{write_atomic, StoredIssue, ATTACHMENTS_DIR};

static URL_RE: LazyLock<Regex> = LazyLock::new(|| {
    // Stops at whitespace and at the delimiters Markdown/HTML put around links.
    Regex::new(r#"https?://[^\s<>()\[\]"'`]+"#).expect("a valid literal regex")
});

/// Attachment URLs in `text`, in order of appearance, without duplicates.
pub fn find_urls(text: &str, api: &Url) -> Vec<Url> {
    let mut out: Vec<Url> = Vec::new();
    for m in URL_RE.find_iter(text) {
        let raw = m
            .as_str()
            .trim_end_matches(['.', ',', ';', ':', '!', '?', '*', '_']);
        let Ok(url) = Url::parse(raw) else { continue };
        if is_attachment(&url, api) && !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

/// GitHub's upload locations: the image CDNs, `github.com/user-attachments/…` and
/// `github.com/{o}/{r}/files/…`; on Enterprise Server (and the test server) the same paths on the
/// API's host.
fn is_attachment(url: &Url, api: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    if matches!(
        host,
        "user-images.githubusercontent.com" | "private-user-images.githubusercontent.com"
    ) {
        return true;
    }
    let same_host = host == api.host_str().unwrap_or("")
        && url.port_or_known_default() == api.port_or_known_default();
    if host != "github.com" && !same_host {
        return false;
    }
    let path = url.path();
    path.starts_with("/user-attachments/")
        || path.starts_with("/storage/user/")
        || path.split('/').nth(3) == Some("files")
}

/// Where an attachment is saved, relative to the data directory: a folder per issue, the URL's
/// hash (stable across runs, unique per URL) and its cleaned-up file name.
pub fn rel_path(issue: &StoredIssue, url: &Url) -> String {
    let hash = hex::encode(Sha256::digest(url.as_str().as_bytes()));
    let name: String = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let name = name.trim_start_matches('.');
    let name = if name.is_empty() { "file" } else { name };
    format!(
        "{ATTACHMENTS_DIR}/{}_{}_issue_{}/{}-{}",
        issue.org,
        issue.repo,
        issue.issue.number,
        &hash[..12],
        name
    )
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct AttachmentCounts {
    pub downloaded: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Downloads the attachments of one issue (files already on disk are kept, not fetched again),
/// records them in `issue.attachments`, and returns the table rows. Failures are recorded, never
/// fatal.
pub async fn download(
    client: &Client,
    root: &std::path::Path,
    issue: &mut StoredIssue,
    max_bytes: u64,
    counts: &mut AttachmentCounts,
) -> Vec<AttachmentRow> {
    let api = client.config().api_url.clone();
    let mut found: Vec<(Option<i64>, Url)> = Vec::new();
    if let Some(b) = &issue.issue.body {
        found.extend(find_urls(b, &api).into_iter().map(|u| (None, u)));
    }
    for c in &issue.issue.comments {
        if let Some(b) = &c.body {
            for u in find_urls(b, &api) {
                if !found.iter().any(|(_, f)| *f == u) {
                    found.push((Some(c.id), u));
                }
            }
        }
    }
    let issue_id = issue.key();
    let mut rows = Vec::with_capacity(found.len());
    for (comment_id, url) in found {
        let rel = rel_path(issue, &url);
        let abs = root.join(&rel);
        let mut row = AttachmentRow {
            issue_id: issue_id.clone(),
            comment_id,
            url: url.to_string(),
            file_path: None,
            content_type: None,
            size_bytes: None,
            status: String::new(),
            error: None,
            downloaded_at: None,
        };
        if let Ok(md) = std::fs::metadata(&abs) {
            row.status = "downloaded".into();
            row.file_path = Some(rel);
            row.size_bytes = i64::try_from(md.len()).ok();
            row.downloaded_at = md
                .modified()
                .ok()
                .map(|t| chrono::DateTime::<chrono::Utc>::from(t).naive_utc());
            rows.push(row);
            continue;
        }
        match fetch(client, &url, max_bytes).await {
            Ok(Fetched::Body(bytes, content_type)) => {
                let saved = abs
                    .parent()
                    .map(std::fs::create_dir_all)
                    .transpose()
                    .map_err(anyhow::Error::from)
                    .and_then(|_| write_atomic(&abs, &bytes));
                match saved {
                    Ok(()) => {
                        counts.downloaded += 1;
                        row.status = "downloaded".into();
                        row.file_path = Some(rel);
                        row.size_bytes = i64::try_from(bytes.len()).ok();
                        row.content_type = content_type;
                        row.downloaded_at = Some(chrono::Utc::now().naive_utc());
                    }
                    Err(e) => {
                        counts.failed += 1;
                        row.status = "failed".into();
                        row.error = Some(format!("cannot save: {e:#}"));
                    }
                }
            }
            Ok(Fetched::TooLarge(size)) => {
                counts.skipped += 1;
                row.status = "skipped".into();
                row.size_bytes = size.and_then(|s| i64::try_from(s).ok());
                row.error = Some(format!(
                    "larger than the {max_bytes}-byte cap (--max-attachment-size)"
                ));
            }
            Err(why) => {
                counts.failed += 1;
                row.status = "failed".into();
                row.error = Some(why);
            }
        }
        rows.push(row);
    }
    issue.issue.attachments = rows.iter().map(to_json).collect();
    rows
}

fn to_json(r: &AttachmentRow) -> Value {
    json!({
        "url": r.url,
        "comment_id": r.comment_id,
        "file_path": r.file_path,
        "content_type": r.content_type,
        "size_bytes": r.size_bytes,
        "status": r.status,
        "error": r.error,
    })
}

/// Rows of attachments recorded in an issue file by an earlier run.
pub fn rows_from_issue(issue: &StoredIssue) -> Vec<AttachmentRow> {
    let id = issue.key();
    issue
        .issue
        .attachments
        .iter()
        .filter_map(|v| {
            Some(AttachmentRow {
                issue_id: id.clone(),
                comment_id: v.get("comment_id").and_then(Value::as_i64),
                url: v.get("url")?.as_str()?.to_string(),
                file_path: v
                    .get("file_path")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                content_type: v
                    .get("content_type")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                size_bytes: v.get("size_bytes").and_then(Value::as_i64),
                status: v
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("failed")
                    .to_string(),
                error: v.get("error").and_then(Value::as_str).map(str::to_string),
                downloaded_at: None,
            })
        })
        .collect()
}

enum Fetched {
    Body(Vec<u8>, Option<String>),
    TooLarge(Option<u64>),
}

/// One download, stopping as soon as the cap is passed (whatever Content-Length claimed).
async fn fetch(client: &Client, url: &Url, max_bytes: u64) -> Result<Fetched, String> {
    let mut resp = client
        .get_raw(url)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    if let Some(len) = resp.content_length().filter(|l| *l > max_bytes) {
        return Ok(Fetched::TooLarge(Some(len)));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk);
                if buf.len() as u64 > max_bytes {
                    return Ok(Fetched::TooLarge(None));
                }
            }
            Ok(None) => break,
            Err(e) => return Err(format!("download interrupted: {e}")),
        }
    }
    Ok(Fetched::Body(buf, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_github_upload_urls_only() {
        let api = Url::parse("https://api.github.com/").unwrap();
        let text = "see ![img](https://user-images.githubusercontent.com/1/abc.png). \
            and <img src=\"https://github.com/user-attachments/assets/1f2e-33\"> \
            log: https://github.com/o/r/files/123/log.txt, not https://github.com/o/r/issues/1 \
            nor https://example.com/user-attachments/x (twice: https://user-images.githubusercontent.com/1/abc.png)";
        let urls: Vec<String> = find_urls(text, &api)
            .into_iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            urls,
            vec![
                "https://user-images.githubusercontent.com/1/abc.png",
                "https://github.com/user-attachments/assets/1f2e-33",
                "https://github.com/o/r/files/123/log.txt",
            ]
        );
        // Enterprise Server / the test server: uploads live on the API's host.
        let api = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            find_urls("http://127.0.0.1:8080/user-attachments/assets/9", &api).len(),
            1
        );
        assert_eq!(
            find_urls("http://127.0.0.1:9999/user-attachments/assets/9", &api).len(),
            0
        );
    }

    #[test]
    fn paths_are_stable_and_stay_in_their_folder() {
        let mut s = crate::store::StoredIssue {
            org: "o".into(),
            repo: "r".into(),
            issue: serde_json::from_value(json!({"number": 5, "title": "t", "state": "open",
                "created_at": null, "updated_at": null}))
            .unwrap(),
            metadata: crate::store::Metadata::now(),
        };
        s.issue.number = 5;
        let u =
            Url::parse("https://github.com/user-attachments/files/1/..%2F..%2Fetc passwd").unwrap();
        let p = rel_path(&s, &u);
        assert!(p.starts_with("attachments/o_r_issue_5/"), "{p}");
        assert!(!p["attachments/o_r_issue_5/".len()..].contains('/'), "{p}");
        assert_eq!(p, rel_path(&s, &u));
    }
}
