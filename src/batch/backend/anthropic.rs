//! Anthropic Message Batches: the requests travel in the create call, batches carry no
//! metadata, results come as one JSONL file at the batch's `results_url`.

use std::path::Path;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::ai::http::ApiError;
use crate::batch::api::{seg, BatchApi, Body};
use crate::batch::backend::{count, fetch, BatchBackend, Outcome};
use crate::batch::status::map_anthropic_status;
use crate::batch::{now, output_rel};
use crate::db::{Backend, BatchPart};
use crate::error::user;
use crate::store::Store;

pub struct AnthropicBatches {
    api: BatchApi,
}

impl AnthropicBatches {
    pub fn new(api: BatchApi) -> Self {
        Self { api }
    }
}

/// The results path of an ended batch: its `results_url` (absolute or relative), keeping the
/// server the user configured (a proxy or a fake) but the URL's path.
pub fn anthropic_results_path(batch: &Value, batch_id: &str) -> String {
    let fallback = || format!("/v1/messages/batches/{}/results", seg(batch_id));
    match batch["results_url"].as_str() {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            match url::Url::parse(u) {
                Ok(parsed) => {
                    let mut p = parsed.path().to_string();
                    if let Some(q) = parsed.query() {
                        p.push('?');
                        p.push_str(q);
                    }
                    p
                }
                Err(_) => fallback(),
            }
        }
        Some(u) if u.starts_with('/') => u.to_string(),
        _ => fallback(),
    }
}

impl BatchBackend for AnthropicBatches {
    fn backend(&self) -> Backend {
        Backend::Anthropic
    }

    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn upload<'a>(
        &'a self,
        _: &'a Path,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        Box::pin(async { Ok(None) })
    }

    /// `POST /v1/messages/batches` with the requests streamed from the JSONL input file.
    fn create<'a>(
        &'a self,
        input: &'a Path,
        _file_id: Option<&'a str>,
        _job_id: &'a str,
        _part: i32,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let body = Body::Requests {
                path: input.to_path_buf(),
            };
            self.post_batch(body).await
        })
    }

    fn api(&self) -> &BatchApi {
        &self.api
    }

    fn batches_path(&self) -> &'static str {
        "/v1/messages/batches"
    }

    /// Batches of the workspace are paged with `after_id`, the page's `last_id`.
    fn list_cursor(&self) -> &'static str {
        "after_id"
    }

    fn next_cursor(&self, page: &Value) -> Option<String> {
        page["last_id"].as_str().map(str::to_string)
    }

    /// No metadata on message batches: a batch created since the part was marked, with its
    /// request count, that no other part has claimed.
    fn is_lost_part(&self, b: &Value, _: &str, p: &BatchPart, known: &[String]) -> bool {
        let since = p.updated_at.unwrap_or(p.created_at) - chrono::Duration::minutes(5);
        let id = b["id"].as_str().unwrap_or_default().to_string();
        let created = b["created_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.naive_utc());
        let c = &b["request_counts"];
        let total: u64 = ["processing", "succeeded", "errored", "canceled", "expired"]
            .iter()
            .map(|k| c[k].as_u64().unwrap_or(0))
            .sum();
        !known.contains(&id)
            && created.is_some_and(|t| t >= since)
            && total == p.request_count as u64
    }

    fn find_upload<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        Box::pin(async { Ok(None) })
    }

    fn claimed_by(&self, _: &Value) -> Option<(String, Option<i32>)> {
        None
    }

    fn apply(&self, p: &mut BatchPart, b: &Value) {
        p.status = map_anthropic_status(b);
        let c = &b["request_counts"];
        if p.collected_at.is_none() {
            p.completed_count = count(&c["succeeded"]);
            p.failed_count = count(&c["errored"]) + count(&c["canceled"]) + count(&c["expired"]);
        }
        p.updated_at = Some(now());
    }

    fn fetch_results<'a>(
        &'a self,
        store: &'a Store,
        job_id: &'a str,
        part: &'a BatchPart,
    ) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let id = part.provider_batch_id.clone().unwrap_or_default();
            let rel = output_rel(job_id, part.part);
            if !store.abs(&rel).is_file() {
                let batch = self
                    .retrieve(&id)
                    .await
                    .map_err(|e| user(format!("cannot read batch {id}: {e}")))?;
                fetch(&self.api, store, &anthropic_results_path(&batch, &id), &rel)
                    .await
                    .map_err(|e| user(format!("cannot download the results of batch {id}: {e}")))?;
            }
            Ok(vec![rel])
        })
    }

    /// A result line: `succeeded` / `errored` (double-nested error) / `canceled` / `expired`.
    fn outcome(&self, mut v: Value) -> Outcome {
        let r = &mut v["result"];
        match r["type"].as_str() {
            Some("succeeded") => Outcome::Answer(r["message"].take()),
            Some("errored") => {
                let e = &r["error"]["error"];
                Outcome::Failed(format!(
                    "request failed: {}: {}",
                    e["type"].as_str().unwrap_or("error"),
                    e["message"].as_str().unwrap_or("no message")
                ))
            }
            Some("canceled") => {
                Outcome::Cancelled("the batch was cancelled before this request ran".into())
            }
            Some("expired") => Outcome::Expired("the batch expired before this request ran".into()),
            other => Outcome::Failed(format!("unknown result type {other:?}")),
        }
    }
}
