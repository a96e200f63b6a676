//! Batch input files: one JSONL request line per issue, built byte-identical to the real-time
//! request body, streamed into `batch/input/{job}-{part}.jsonl` with a new part whenever the
//! next line would pass a provider cap. Memory stays flat: one line at a time.

use std::io::{BufWriter, Write};

use crate::ai::{openai, Provider, ProviderKind};
use crate::batch::{input_rel, Caps, PlannedPart};
use crate::db::{BatchPart, IssueRef, PartStatus};
use crate::plan::Plan;
use crate::store::Store;

struct Line {
    bytes: Vec<u8>,
    /// What the line asks, for the estimate.
    prompt: crate::ai::Prompt,
}

/// Builds the JSONL line of one issue: `{"custom_id","method","url","body"}` (OpenAI) or
/// `{"custom_id","params"}` (Anthropic). The body bytes are `serde_json::to_vec` of the same
/// value real-time mode sends, so the request is byte-identical.
fn build_line(
    store: &Store,
    plan: &Plan,
    provider: &Provider,
    issue: &IssueRef,
    custom_id: &str,
) -> Result<Line, String> {
    let stored = crate::store::load_issue(store, &issue.file_path, &issue.id)?;
    let (prompt, _) = plan.processor.prompt(&stored);
    let body = provider
        .request_body(&prompt, None)
        .ok_or_else(|| "this model sends no requests".to_string())?;
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let mut line = Vec::with_capacity(body.len() + 96);
    line.extend_from_slice(b"{\"custom_id\":");
    line.extend_from_slice(&serde_json::to_vec(custom_id).map_err(|e| e.to_string())?);
    match provider.kind() {
        ProviderKind::Anthropic => line.extend_from_slice(b",\"params\":"),
        _ => line.extend_from_slice(
            format!(
                ",\"method\":\"POST\",\"url\":\"/v1{}\",\"body\":",
                openai::CHAT_PATH
            )
            .as_bytes(),
        ),
    }
    line.extend_from_slice(&body);
    line.extend_from_slice(b"}\n");
    Ok(Line {
        bytes: line,
        prompt,
    })
}

/// The part being filled while writing inputs.
struct OpenPart {
    part: i32,
    writer: Option<BufWriter<std::fs::File>>,
    tmp: std::path::PathBuf,
    requests: usize,
    bytes: u64,
    tokens: u64,
    first: String,
    last: String,
}

/// What writing (or planning) the inputs produced.
pub(crate) struct Written {
    /// Each part with its first and last custom id.
    pub parts: Vec<(PlannedPart, String, String)>,
    /// (custom id, issue, reason) of issues that could not be prepared.
    pub unprepared: Vec<(String, String, String)>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Option<f64>,
}

impl Written {
    /// The written parts as new part rows of `job_id` in `status`, with each part's first and
    /// last custom id.
    pub fn part_rows(&self, job_id: &str, status: PartStatus) -> Vec<(BatchPart, String, String)> {
        self.parts
            .iter()
            .map(|(p, first, last)| {
                let part = BatchPart {
                    bytes: p.bytes as i64,
                    input_path: Some(input_rel(job_id, p.part)),
                    est_tokens: p.tokens as i64,
                    ..BatchPart::new(job_id, p.part, status, p.requests as i64)
                };
                (part, first.clone(), last.clone())
            })
            .collect()
    }
}

/// Streams the request lines into `batch/input/{job}-{part}.jsonl`, starting a new part when
/// the next line would pass a cap. With `write = false` only plans (dry run). Memory stays flat:
/// one line at a time. Parts are numbered from `first_part` (a re-split adds parts after the
/// job's last).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_inputs(
    store: &Store,
    plan: &Plan,
    provider: &Provider,
    caps: Caps,
    job_id: &str,
    items: &[(String, IssueRef)],
    write: bool,
    first_part: i32,
) -> anyhow::Result<Written> {
    let mut out = Written {
        parts: Vec::new(),
        unprepared: Vec::new(),
        prompt_tokens: 0,
        completion_tokens: 0,
        cost: Some(0.0),
    };
    if write {
        std::fs::create_dir_all(store.abs(crate::store::BATCH_INPUT_DIR))?;
    }
    let estimator = plan.estimator();
    let mut open: Option<OpenPart> = None;
    let close = |p: OpenPart, out: &mut Written| -> anyhow::Result<()> {
        if let Some(mut w) = p.writer {
            w.flush()?;
            w.get_ref().sync_data()?;
            drop(w);
            std::fs::rename(&p.tmp, store.abs(&input_rel(job_id, p.part)))?;
        }
        out.parts.push((
            PlannedPart {
                part: p.part,
                requests: p.requests,
                bytes: p.bytes,
                tokens: p.tokens,
            },
            p.first,
            p.last,
        ));
        Ok(())
    };
    for (custom_id, issue) in items {
        let line = match build_line(store, plan, provider, issue, custom_id) {
            Ok(l) => l,
            Err(reason) => {
                out.unprepared
                    .push((custom_id.clone(), issue.id.clone(), reason));
                continue;
            }
        };
        let len = line.bytes.len() as u64;
        let usage = estimator.for_prompt(&line.prompt);
        if len > caps.max_bytes {
            out.unprepared.push((
                custom_id.clone(),
                issue.id.clone(),
                format!("its request ({len} bytes) is larger than the provider's batch size cap ({} bytes)", caps.max_bytes),
            ));
            continue;
        }
        let full = open.as_ref().is_some_and(|p| {
            p.requests + 1 > caps.max_requests
                || p.bytes + len > caps.max_bytes
                || p.tokens + usage.prompt_tokens > caps.max_tokens
        });
        if full {
            if let Some(p) = open.take() {
                close(p, &mut out)?;
            }
        }
        let p = match open.as_mut() {
            Some(p) => p,
            None => {
                let part = first_part + out.parts.len() as i32;
                let tmp = store.abs(&format!("{}.tmp", input_rel(job_id, part)));
                let writer = if write {
                    Some(BufWriter::with_capacity(
                        256 * 1024,
                        std::fs::File::create(&tmp)?,
                    ))
                } else {
                    None
                };
                open.insert(OpenPart {
                    part,
                    writer,
                    tmp,
                    requests: 0,
                    bytes: 0,
                    tokens: 0,
                    first: custom_id.clone(),
                    last: custom_id.clone(),
                })
            }
        };
        if let Some(w) = p.writer.as_mut() {
            w.write_all(&line.bytes)?;
        }
        p.requests += 1;
        p.bytes += len;
        p.tokens += usage.prompt_tokens;
        p.last = custom_id.clone();
        out.prompt_tokens += usage.prompt_tokens;
        out.completion_tokens += usage.completion_tokens;
        out.cost = match (out.cost, estimator.cost(&usage, true)) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    if let Some(p) = open.take() {
        close(p, &mut out)?;
    }
    Ok(out)
}

/// Custom ids `{job}-0000001`, … in selection order: parts hold contiguous ranges of them.
pub(crate) fn custom_ids(job_id: &str, issues: Vec<IssueRef>) -> Vec<(String, IssueRef)> {
    issues
        .into_iter()
        .enumerate()
        .map(|(i, issue)| (format!("{job_id}-{:07}", i + 1), issue))
        .collect()
}

#[cfg(test)]
mod byte_identity_tests {
    //! A batch line carries exactly the bytes real-time mode sends (docs/batch.md): the real
    //! line builder against the bytes a loopback server received from the real-time engine.
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use serde_json::json;

    use super::build_line;
    use crate::ai::{Endpoint, Provider, Secret};
    use crate::db::IssueRef;
    use crate::plan::{AiConfig, Plan};
    use crate::realtime::{Engine, ItemResult};
    use crate::store::{Store, StoredIssue};

    /// Serves one provider on 127.0.0.1:0, recording each request body's raw bytes.
    async fn serve(received: Arc<Mutex<Vec<Vec<u8>>>>) -> String {
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: Bytes| {
            let received = received.clone();
            async move {
                received.lock().unwrap().push(body.to_vec());
                let answer = json!({"recommended_labels": [], "current_labels_assessment": [],
                    "confidence": 0.5, "summary": "s", "reasoning": "r"});
                axum::Json(if uri.path().ends_with("/messages") {
                    json!({"id": "msg_1", "type": "message", "role": "assistant",
                        "content": [{"type": "tool_use", "id": "toolu_1",
                            "name": "product_labeling", "input": answer}],
                        "stop_reason": "tool_use",
                        "usage": {"input_tokens": 1, "output_tokens": 1}})
                } else {
                    json!({"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": answer.to_string()}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                })
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        format!("http://{addr}")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_lines_carry_the_bytes_real_time_mode_sends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.ensure_dirs().unwrap();
        let mut issue = StoredIssue::new("o", "r", 7, "kotsadm \"crash\" — ünïcode ✓");
        issue.issue.body = Some("Body with a tab\there, a newline\nand </script>.".into());
        let file_path = store.write_issue(&issue).unwrap();
        let item = IssueRef {
            id: "o/r#7".into(),
            org: "o".into(),
            repo: "r".into(),
            number: 7,
            file_path,
            has_result: false,
        };
        for (model, base, wrapper) in [
            ("openai:gpt-4o-mini", "/v1", ",\"body\":"),
            ("anthropic:claude-haiku-4-5", "", ",\"params\":"),
        ] {
            let received = Arc::new(Mutex::new(Vec::new()));
            let url = serve(received.clone()).await;
            let env = |_: &str| -> Option<String> { None };
            let plan = Plan::resolve(
                "product-labeling",
                Some(model),
                &AiConfig::default(),
                &env,
                &crate::report::Silent,
            )
            .unwrap();
            let endpoint = Endpoint {
                base_url: format!("{url}{base}"),
                key: Secret::new("k"),
            };
            let provider =
                Provider::new(&plan.model, Some(endpoint), plan.settings.clone()).unwrap();
            let line = build_line(&store, &plan, &provider, &item, "job-0-1").unwrap();
            let engine = Engine::new(plan, provider).unwrap();
            let done = engine.process(&store, item.clone()).await;
            assert!(matches!(done, ItemResult::Done(_)), "{model}: {done:?}");
            let sent = received.lock().unwrap().clone();
            assert_eq!(sent.len(), 1, "{model}");
            // The line is `{"custom_id":…<wrapper><the request bytes>}\n`.
            let text = String::from_utf8(line.bytes).unwrap();
            let at = text.find(wrapper).unwrap() + wrapper.len();
            let inner = text[at..].strip_suffix("}\n").unwrap();
            assert_eq!(
                inner.as_bytes(),
                sent[0].as_slice(),
                "{model}: the batch line differs from the real-time request"
            );
        }
    }
}
