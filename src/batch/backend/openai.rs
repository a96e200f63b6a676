//! The OpenAI Batch API: the input is uploaded as a file, the batch carries our job id and part
//! in its metadata, results come as an output file and an error file.

use std::path::Path;

use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{json, Value};

use crate::ai::http::{decode_error, ApiError};
use crate::ai::{openai, Secret};
use crate::batch::api::{seg, str_field, BatchApi, Body};
use crate::batch::backend::{count, fetch, BatchBackend, Outcome};
use crate::batch::status::map_openai_status;
use crate::batch::{errors_rel, now, output_rel};
use crate::db::{Backend, BatchPart};
use crate::error::user;
use crate::store::Store;

/// Metadata key carrying our job id on OpenAI batches (and the part number under `PART_KEY`).
pub const JOB_KEY: &str = "github_analysis_job";
pub const PART_KEY: &str = "github_analysis_part";

pub struct OpenAiBatches {
    api: BatchApi,
}

impl OpenAiBatches {
    pub fn new(api: BatchApi) -> Self {
        Self { api }
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
            self.post_batch(Body::Json(body.to_string().into_bytes()))
                .await
        })
    }

    fn api(&self) -> &BatchApi {
        &self.api
    }

    fn batches_path(&self) -> &'static str {
        "/batches"
    }

    /// Every batch of the account is paged with `after`, the last id of a page.
    fn list_cursor(&self) -> &'static str {
        "after"
    }

    fn next_cursor(&self, page: &Value) -> Option<String> {
        page["data"]
            .as_array()
            .and_then(|d| d.last())
            .and_then(|b| b["id"].as_str())
            .map(str::to_string)
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
        let part = b["metadata"][PART_KEY]
            .as_str()
            .and_then(|p| p.parse().ok());
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
    fn outcome(&self, mut v: Value) -> Outcome {
        if let Some(resp) = v.get_mut("response").filter(|r| !r.is_null()) {
            let status = resp["status_code"].as_u64().unwrap_or(0);
            let body = resp["body"].take();
            if status == 200 {
                return Outcome::Answer(body);
            }
            let body = serde_json::to_vec(&body).unwrap_or_default();
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
