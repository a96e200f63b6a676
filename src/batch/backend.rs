//! `BatchBackend`: everything that differs between the OpenAI Batch API (Files + Batches) and
//! Anthropic Message Batches — submitting a part, reading, cancelling and listing batches,
//! recognising a batch a crash left unrecorded, mapping a batch object onto a part, fetching
//! result files and reading their lines. The engine (`submit.rs`, `status.rs`,
//! `collect_results.rs`, `manage.rs`) talks to this trait only.

use std::path::Path;

use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{json, Value};

use crate::ai::http::{decode_error, ApiError, Auth, RetryPolicy};
use crate::ai::{anthropic, openai, Endpoint, ProviderKind, Secret};
use crate::batch::api::{seg, str_field, BatchApi, Body};
use crate::batch::status::{map_anthropic_status, map_openai_status};
use crate::batch::{errors_rel, now, output_rel};
use crate::db::{Backend, BatchPart};
use crate::error::user;
use crate::store::Store;

/// Metadata key carrying our job id on OpenAI batches (and the part number under `PART_KEY`).
pub const JOB_KEY: &str = "github_analysis_job";
pub const PART_KEY: &str = "github_analysis_part";

/// What one result line says about its item.
#[derive(Debug)]
pub enum Outcome {
    /// The provider's response body, to parse and validate like a real-time answer.
    Answer(Vec<u8>),
    Failed(String),
    Expired(String),
    Cancelled(String),
}

pub trait BatchBackend: Send + Sync {
    fn backend(&self) -> Backend;

    /// The provider's name, for messages.
    fn name(&self) -> &'static str;

    /// Step 3a, recorded before the batch is created: the input file uploaded (OpenAI) → its
    /// id. `None` when the provider takes the requests with the create call (Anthropic).
    fn upload<'a>(
        &'a self,
        input: &'a Path,
        filename: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>>;

    /// Step 3b: creates the batch (from the uploaded file, or streaming the input).
    fn create<'a>(
        &'a self,
        input: &'a Path,
        file_id: Option<&'a str>,
        job_id: &'a str,
        part: i32,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    fn retrieve<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<Value, ApiError>>;

    fn cancel<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// The account's batches, newest first, at most `max`.
    fn list(&self, max: usize) -> BoxFuture<'_, Result<Vec<Value>, ApiError>>;

    /// Whether a listed batch is the one a part marked `submitting` created before a crash.
    /// `known` holds the batch ids every job has recorded.
    fn is_lost_part(&self, batch: &Value, job_id: &str, part: &BatchPart, known: &[String])
        -> bool;

    /// An upload (by file name) whose id a crash lost, so it is reused, not uploaded twice.
    fn find_upload<'a>(
        &'a self,
        filename: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>>;

    /// The job id and part a batch carries, for orphan reports (only OpenAI batches carry any).
    fn claimed_by(&self, batch: &Value) -> Option<(String, Option<i32>)>;

    /// Copies a batch object's status, counts, file ids and errors into its part.
    fn apply(&self, part: &mut BatchPart, batch: &Value);

    /// Downloads an ended part's result files into `batch/output/` (reusing files already
    /// there) and returns their paths relative to the data directory.
    fn fetch_results<'a>(
        &'a self,
        store: &'a Store,
        job_id: &'a str,
        part: &'a BatchPart,
    ) -> BoxFuture<'a, anyhow::Result<Vec<String>>>;

    /// What one line of a result file says.
    fn outcome(&self, line: &Value) -> Outcome;
}

/// The batch backend of a network provider.
pub fn for_provider(
    kind: ProviderKind,
    endpoint: &Endpoint,
    policy: RetryPolicy,
) -> anyhow::Result<Option<Box<dyn BatchBackend>>> {
    Ok(match kind {
        ProviderKind::Rules => None,
        ProviderKind::OpenAi => Some(Box::new(OpenAiBatches {
            api: BatchApi::new(
                &endpoint.base_url,
                Auth::Bearer(endpoint.key.clone()),
                Vec::new(),
                policy,
            )?,
        })),
        ProviderKind::Anthropic => Some(Box::new(AnthropicBatches {
            api: BatchApi::new(
                &endpoint.base_url,
                Auth::ApiKey(endpoint.key.clone()),
                vec![("anthropic-version", anthropic::API_VERSION)],
                policy,
            )?,
        })),
    })
}

fn count(v: &Value) -> i64 {
    v.as_u64()
        .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Downloads `remote` to `rel` unless it is already there.
async fn fetch(api: &BatchApi, store: &Store, remote: &str, rel: &str) -> Result<(), ApiError> {
    let dest = store.abs(rel);
    if !dest.is_file() {
        api.download(remote, &dest).await?;
    }
    Ok(())
}

// ---- OpenAI Files + Batches ----------------------------------------------------------------

/// The OpenAI Batch API: the input is uploaded as a file, the batch carries our job id and part
/// in its metadata, results come as an output file and an error file.
pub struct OpenAiBatches {
    api: BatchApi,
}

impl OpenAiBatches {
    /// Every batch of the account (paginated with `after`), newest first, at most `max`.
    async fn list_all(&self, max: usize) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/batches?limit=100&after={}", seg(a)),
                None => "/batches?limit=100".to_string(),
            };
            let v = self.api.json(Method::GET, &path, Body::Empty).await?;
            let data = v["data"].as_array().cloned().unwrap_or_default();
            let last = data
                .last()
                .and_then(|b| b["id"].as_str())
                .map(str::to_string);
            out.extend(data);
            if v["has_more"].as_bool() != Some(true) || out.len() >= max || last.is_none() {
                break;
            }
            after = last;
        }
        Ok(out)
    }
}

impl BatchBackend for OpenAiBatches {
    fn backend(&self) -> Backend {
        Backend::OpenAi
    }

    fn name(&self) -> &'static str {
        "openai"
    }

    /// `POST /files` (multipart, purpose=batch) → file id.
    fn upload<'a>(
        &'a self,
        input: &'a Path,
        filename: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        Box::pin(async move {
            let body = Body::Upload {
                path: input.to_path_buf(),
                filename: filename.to_string(),
            };
            let v = self.api.json(Method::POST, "/files", body).await?;
            str_field(&v, "id", "/files").map(Some)
        })
    }

    /// `POST /batches` for the chat completions endpoint, our ids in its metadata.
    fn create<'a>(
        &'a self,
        _input: &'a Path,
        file_id: Option<&'a str>,
        job_id: &'a str,
        part: i32,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let body = json!({
                "input_file_id": file_id.unwrap_or_default(),
                "endpoint": format!("/v1{}", openai::CHAT_PATH),
                "completion_window": "24h",
                "metadata": {JOB_KEY: job_id, PART_KEY: part.to_string()},
            });
            let v = self
                .api
                .json(
                    Method::POST,
                    "/batches",
                    Body::Json(body.to_string().into_bytes()),
                )
                .await?;
            str_field(&v, "id", "/batches")?;
            Ok(v)
        })
    }

    fn retrieve<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let path = format!("/batches/{}", seg(batch_id));
            self.api.json(Method::GET, &path, Body::Empty).await
        })
    }

    fn cancel<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let path = format!("/batches/{}/cancel", seg(batch_id));
            self.api.json(Method::POST, &path, Body::Empty).await
        })
    }

    fn list(&self, max: usize) -> BoxFuture<'_, Result<Vec<Value>, ApiError>> {
        Box::pin(self.list_all(max))
    }

    fn is_lost_part(&self, b: &Value, job_id: &str, part: &BatchPart, _: &[String]) -> bool {
        b["metadata"][JOB_KEY].as_str() == Some(job_id)
            && b["metadata"][PART_KEY].as_str() == Some(part.part.to_string().as_str())
    }

    fn find_upload<'a>(
        &'a self,
        filename: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        Box::pin(async move {
            let v = self
                .api
                .json(Method::GET, "/files?purpose=batch", Body::Empty)
                .await?;
            Ok(v["data"].as_array().and_then(|files| {
                files
                    .iter()
                    .filter(|f| f["filename"].as_str() == Some(filename))
                    .find_map(|f| f["id"].as_str().map(str::to_string))
            }))
        })
    }

    fn claimed_by(&self, b: &Value) -> Option<(String, Option<i32>)> {
        let job = b["metadata"][JOB_KEY].as_str()?;
        let part = b["metadata"][PART_KEY].as_str().and_then(|p| p.parse().ok());
        Some((job.to_string(), part))
    }

    fn apply(&self, p: &mut BatchPart, b: &Value) {
        p.status = map_openai_status(b["status"].as_str().unwrap_or(""));
        if let Some(f) = b["output_file_id"].as_str() {
            p.output_file_id = Some(f.to_string());
        }
        if let Some(f) = b["error_file_id"].as_str() {
            p.error_file_id = Some(f.to_string());
        }
        let c = &b["request_counts"];
        if p.collected_at.is_none() {
            p.completed_count = count(&c["completed"]);
            p.failed_count = count(&c["failed"]);
        }
        if let Some(errs) = b["errors"]["data"].as_array().filter(|e| !e.is_empty()) {
            let text: Vec<String> = errs
                .iter()
                .take(5)
                .map(|e| {
                    let line = e["line"]
                        .as_u64()
                        .map(|l| format!(" (line {l})"))
                        .unwrap_or_default();
                    format!(
                        "{}{line}: {}",
                        e["code"].as_str().unwrap_or("error"),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect();
            p.error_message = Some(text.join("; "));
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
            let mut files = Vec::new();
            for (file_id, rel) in [
                (&part.output_file_id, output_rel(job_id, part.part)),
                (&part.error_file_id, errors_rel(job_id, part.part)),
            ] {
                let Some(file_id) = file_id else { continue };
                fetch(
                    &self.api,
                    store,
                    &format!("/files/{}/content", seg(file_id)),
                    &rel,
                )
                .await
                .map_err(|e| user(format!("cannot download file {file_id}: {e}")))?;
                files.push(rel);
            }
            Ok(files)
        })
    }

    /// An output/error line: `response` (status + body) or `error` (`batch_expired`, …).
    fn outcome(&self, v: &Value) -> Outcome {
        if let Some(resp) = v.get("response").filter(|r| !r.is_null()) {
            let status = resp["status_code"].as_u64().unwrap_or(0);
            let body = serde_json::to_vec(&resp["body"]).unwrap_or_default();
            if status == 200 {
                return Outcome::Answer(body);
            }
            let e = decode_error(
                u16::try_from(status).unwrap_or(0),
                &reqwest::header::HeaderMap::new(),
                &body,
                &Secret::new(""),
            );
            return Outcome::Failed(format!("request failed: {e}"));
        }
        let code = v["error"]["code"].as_str().unwrap_or("error");
        let message = v["error"]["message"].as_str().unwrap_or("no message");
        let text = format!("{code}: {message}");
        match code {
            "batch_expired" => Outcome::Expired(text),
            "batch_cancelled" => Outcome::Cancelled(text),
            _ => Outcome::Failed(text),
        }
    }
}

// ---- Anthropic Message Batches -------------------------------------------------------------

/// Anthropic Message Batches: the requests travel in the create call, batches carry no
/// metadata, results come as one JSONL file at the batch's `results_url`.
pub struct AnthropicBatches {
    api: BatchApi,
}

impl AnthropicBatches {
    /// Batches of the workspace, newest first (paginated with `after_id`), at most `max`.
    async fn list_all(&self, max: usize) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/messages/batches?limit=100&after_id={}", seg(a)),
                None => "/v1/messages/batches?limit=100".to_string(),
            };
            let v = self.api.json(Method::GET, &path, Body::Empty).await?;
            let data = v["data"].as_array().cloned().unwrap_or_default();
            out.extend(data);
            let last = v["last_id"].as_str().map(str::to_string);
            if v["has_more"].as_bool() != Some(true) || out.len() >= max || last.is_none() {
                break;
            }
            after = last;
        }
        Ok(out)
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

    fn upload<'a>(&'a self, _: &'a Path, _: &'a str) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
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
            let v = self
                .api
                .json(Method::POST, "/v1/messages/batches", body)
                .await?;
            str_field(&v, "id", "/v1/messages/batches")?;
            Ok(v)
        })
    }

    fn retrieve<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let path = format!("/v1/messages/batches/{}", seg(batch_id));
            self.api.json(Method::GET, &path, Body::Empty).await
        })
    }

    fn cancel<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let path = format!("/v1/messages/batches/{}/cancel", seg(batch_id));
            self.api.json(Method::POST, &path, Body::Empty).await
        })
    }

    fn list(&self, max: usize) -> BoxFuture<'_, Result<Vec<Value>, ApiError>> {
        Box::pin(self.list_all(max))
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
        !known.contains(&id) && created.is_some_and(|t| t >= since) && total == p.request_count as u64
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
    fn outcome(&self, v: &Value) -> Outcome {
        let r = &v["result"];
        match r["type"].as_str() {
            Some("succeeded") => {
                Outcome::Answer(serde_json::to_vec(&r["message"]).unwrap_or_default())
            }
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
            Some("expired") => {
                Outcome::Expired("the batch expired before this request ran".into())
            }
            other => Outcome::Failed(format!("unknown result type {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends() -> (Box<dyn BatchBackend>, Box<dyn BatchBackend>) {
        let ep = Endpoint {
            base_url: "http://127.0.0.1:9".into(),
            key: Secret::new("k"),
        };
        let o = for_provider(ProviderKind::OpenAi, &ep, RetryPolicy::default());
        let a = for_provider(ProviderKind::Anthropic, &ep, RetryPolicy::default());
        (o.unwrap().unwrap(), a.unwrap().unwrap())
    }

    #[test]
    fn output_lines_map_to_outcomes() {
        let (openai, anthropic) = backends();
        let ok = json!({"custom_id": "a", "response": {"status_code": 200, "body": {"id": "x"}}, "error": null});
        assert!(matches!(openai.outcome(&ok), Outcome::Answer(b) if b == br#"{"id":"x"}"#));
        let bad = json!({"custom_id": "a", "response": {"status_code": 400, "request_id": "r",
            "body": {"error": {"message": "bad temperature", "type": "invalid_request_error", "param": null, "code": "unsupported_value"}}}, "error": null});
        assert!(
            matches!(openai.outcome(&bad), Outcome::Failed(r) if r.contains("bad temperature") && r.contains("400"))
        );
        let exp = json!({"custom_id": "a", "response": null, "error": {"code": "batch_expired", "message": "m"}});
        assert!(matches!(openai.outcome(&exp), Outcome::Expired(_)));
        let can = json!({"custom_id": "a", "response": null, "error": {"code": "batch_cancelled", "message": "m"}});
        assert!(matches!(openai.outcome(&can), Outcome::Cancelled(_)));
        let garbage = json!({"custom_id": "a"});
        assert!(matches!(openai.outcome(&garbage), Outcome::Failed(_)));
        let err = json!({"custom_id": "a", "result": {"type": "errored", "error": {"type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}}}});
        assert!(
            matches!(anthropic.outcome(&err), Outcome::Failed(r) if r.contains("max_tokens: too big"))
        );
        assert!(matches!(
            anthropic.outcome(&json!({"result": {"type": "expired"}})),
            Outcome::Expired(_)
        ));
        assert!(matches!(
            anthropic.outcome(&json!({"result": {"type": "canceled"}})),
            Outcome::Cancelled(_)
        ));
        assert!(matches!(
            anthropic.outcome(&json!({"result": {"type": "succeeded", "message": {}}})),
            Outcome::Answer(_)
        ));
        assert!(matches!(anthropic.outcome(&json!({})), Outcome::Failed(_)));
    }

    #[test]
    fn results_urls_keep_the_configured_server() {
        let abs =
            json!({"results_url": "https://api.anthropic.com/v1/messages/batches/m1/results"});
        assert_eq!(
            anthropic_results_path(&abs, "m1"),
            "/v1/messages/batches/m1/results"
        );
        assert_eq!(
            anthropic_results_path(&json!({}), "m/1"),
            "/v1/messages/batches/m%2F1/results"
        );
    }

    #[test]
    fn only_openai_batches_name_their_job() {
        let (openai, anthropic) = backends();
        let b = json!({"metadata": {JOB_KEY: "abc", PART_KEY: "2"}});
        assert_eq!(openai.claimed_by(&b), Some(("abc".to_string(), Some(2))));
        assert_eq!(anthropic.claimed_by(&b), None);
        assert_eq!(openai.backend(), Backend::OpenAi);
        assert_eq!(anthropic.backend(), Backend::Anthropic);
    }
}
