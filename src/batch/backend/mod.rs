//! `BatchBackend`: everything that differs between the OpenAI Batch API (Files + Batches) and
//! Anthropic Message Batches — submitting a part, reading, cancelling and listing batches,
//! recognising a batch a crash left unrecorded, mapping a batch object onto a part, fetching
//! result files and reading their lines. The engine (`submit.rs`, `status.rs`,
//! `collect_results.rs`, `manage.rs`) talks to this trait only.

mod anthropic;
mod openai;

use std::path::Path;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::ai::http::{ApiError, Auth, RetryPolicy};
use crate::ai::{Endpoint, ProviderKind};
use crate::batch::api::{seg, str_field, BatchApi, Body, Watch};
use crate::db::{Backend, BatchPart};
use crate::store::Store;
pub use anthropic::{anthropic_results_path, AnthropicBatches};
pub use openai::{OpenAiBatches, JOB_KEY, PART_KEY};
use reqwest::Method;

/// What one result line says about its item.
#[derive(Debug)]
pub enum Outcome {
    /// The provider's response body (parsed once, with its line), to read and validate like a
    /// real-time answer.
    Answer(Value),
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

    /// Step 3b: creates the batch (from the uploaded file, or streaming the input). Sent once
    /// unless the server certainly refused it: an error whose outcome is unknown (5xx, timeout,
    /// reset) is returned for the caller to look the batch up before sending again.
    fn create<'a>(
        &'a self,
        input: &'a Path,
        file_id: Option<&'a str>,
        job_id: &'a str,
        part: i32,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// The provider's batch API client.
    fn api(&self) -> &BatchApi;

    /// Where the provider keeps batches (`/batches`, `/v1/messages/batches`).
    fn batches_path(&self) -> &'static str;

    /// Sends a create request once; the answer must name the new batch.
    fn post_batch(&self, body: Body) -> BoxFuture<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let path = self.batches_path();
            let v = self.api().json_once(Method::POST, path, body).await?;
            str_field(&v, "id", path)?;
            Ok(v)
        })
    }

    fn retrieve<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let path = format!("{}/{}", self.batches_path(), seg(batch_id));
            self.api().json(Method::GET, &path, Body::Empty).await
        })
    }

    fn cancel<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let path = format!("{}/{}/cancel", self.batches_path(), seg(batch_id));
            self.api().json(Method::POST, &path, Body::Empty).await
        })
    }

    /// The query parameter that asks for the next page of the batch list.
    fn list_cursor(&self) -> &'static str;

    /// The cursor of the page after `page` (if the page says there are more).
    fn next_cursor(&self, page: &Value) -> Option<String>;

    /// The account's batches, newest first, at most `max`.
    fn list(&self, max: usize) -> BoxFuture<'_, Result<Vec<Value>, ApiError>> {
        Box::pin(async move {
            let first = format!("{}?limit=100", self.batches_path());
            list_pages(self.api(), &first, self.list_cursor(), max, |page| {
                self.next_cursor(page)
            })
            .await
        })
    }

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

    /// What one line of a result file says (the answer is moved out of the line, not copied).
    fn outcome(&self, line: Value) -> Outcome;
}

/// The batch backend of a network provider.
pub fn for_provider(
    kind: ProviderKind,
    endpoint: &Endpoint,
    policy: RetryPolicy,
) -> anyhow::Result<Option<Box<dyn BatchBackend>>> {
    for_provider_watched(kind, endpoint, policy, Watch::default())
}

/// [`for_provider`] with the idle timeout and progress bar of uploads and downloads.
pub fn for_provider_watched(
    kind: ProviderKind,
    endpoint: &Endpoint,
    policy: RetryPolicy,
    watch: Watch,
) -> anyhow::Result<Option<Box<dyn BatchBackend>>> {
    Ok(match kind {
        ProviderKind::Rules | ProviderKind::Local => None,
        ProviderKind::OpenAi => Some(Box::new(OpenAiBatches::new(
            BatchApi::new(
                &endpoint.base_url,
                Auth::Bearer(endpoint.key.clone()),
                Vec::new(),
                policy,
            )?
            .watched(watch),
        ))),
        ProviderKind::Anthropic => Some(Box::new(AnthropicBatches::new(
            BatchApi::new(
                &endpoint.base_url,
                Auth::ApiKey(endpoint.key.clone()),
                vec![("anthropic-version", crate::ai::anthropic::API_VERSION)],
                policy,
            )?
            .watched(watch),
        ))),
    })
}

pub(crate) fn count(v: &Value) -> i64 {
    v.as_u64()
        .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Every item of a paginated listing, newest first, at most `max`: the first page is `first`,
/// each later one `first&{cursor_param}={cursor}` with the cursor `next` finds in a page.
async fn list_pages(
    api: &BatchApi,
    first: &str,
    cursor_param: &str,
    max: usize,
    next: impl Fn(&Value) -> Option<String>,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let mut path = first.to_string();
    loop {
        let v = api.json(Method::GET, &path, Body::Empty).await?;
        out.extend(v["data"].as_array().cloned().unwrap_or_default());
        match next(&v) {
            Some(c) if v["has_more"].as_bool() == Some(true) && out.len() < max => {
                path = format!("{first}&{cursor_param}={}", seg(&c));
            }
            _ => return Ok(out),
        }
    }
}

/// Downloads `remote` to `rel` unless it is already there.
pub(crate) async fn fetch(
    api: &BatchApi,
    store: &Store,
    remote: &str,
    rel: &str,
) -> Result<(), ApiError> {
    let dest = store.abs(rel);
    if !dest.is_file() {
        api.download(remote, &dest).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::Secret;
    use serde_json::json;

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
        assert!(matches!(openai.outcome(ok), Outcome::Answer(b) if b == json!({"id": "x"})));
        let bad = json!({"custom_id": "a", "response": {"status_code": 400, "request_id": "r",
            "body": {"error": {"message": "bad temperature", "type": "invalid_request_error", "param": null, "code": "unsupported_value"}}}, "error": null});
        assert!(
            matches!(openai.outcome(bad), Outcome::Failed(r) if r.contains("bad temperature") && r.contains("400"))
        );
        let exp = json!({"custom_id": "a", "response": null, "error": {"code": "batch_expired", "message": "m"}});
        assert!(matches!(openai.outcome(exp), Outcome::Expired(_)));
        let can = json!({"custom_id": "a", "response": null, "error": {"code": "batch_cancelled", "message": "m"}});
        assert!(matches!(openai.outcome(can), Outcome::Cancelled(_)));
        let garbage = json!({"custom_id": "a"});
        assert!(matches!(openai.outcome(garbage), Outcome::Failed(_)));
        let err = json!({"custom_id": "a", "result": {"type": "errored", "error": {"type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}}}});
        assert!(
            matches!(anthropic.outcome(err), Outcome::Failed(r) if r.contains("max_tokens: too big"))
        );
        assert!(matches!(
            anthropic.outcome(json!({"result": {"type": "expired"}})),
            Outcome::Expired(_)
        ));
        assert!(matches!(
            anthropic.outcome(json!({"result": {"type": "canceled"}})),
            Outcome::Cancelled(_)
        ));
        assert!(matches!(
            anthropic.outcome(json!({"result": {"type": "succeeded", "message": {}}})),
            Outcome::Answer(_)
        ));
        assert!(matches!(anthropic.outcome(json!({})), Outcome::Failed(_)));
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
