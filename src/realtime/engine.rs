//! `Engine`: processing one issue end to end — its prompt, one request (and one repair request
//! for an invalid answer), validation — shared by real-time runs and the local batch executor.

use std::time::Instant;

use crate::ai::http::{ErrorKind, HttpClient, HttpFailure};
use crate::ai::pricing::PriceTable;
use crate::ai::{Answer, AnswerError, ModelSpec, Provider, Repair, Usage};
use crate::db::IssueRef;
use crate::plan::Plan;
use crate::processors::{Processor, Validated};
use crate::realtime::ItemResult;
use crate::result_files::{Finished, Provenance};
use crate::store::{Store, StoredIssue};

/// Everything needed to process one issue, shared by all workers.
#[derive(Debug)]
pub struct Engine {
    pub processor: Processor,
    pub model: ModelSpec,
    pub provider: Provider,
    /// `None` for `rules`.
    pub http: Option<HttpClient>,
    pub prices: PriceTable,
    /// Notices for the user (e.g. what the adaptive fallback changed), shown by the run.
    pub notices: std::sync::Mutex<Vec<String>>,
}

impl Engine {
    /// The engine of a plan and its provider, with an HTTP client for network providers.
    pub fn new(plan: Plan, provider: Provider) -> anyhow::Result<Self> {
        let http = match provider {
            Provider::Rules => None,
            _ => Some(HttpClient::new(plan.policy.clone())?),
        };
        Ok(Self {
            processor: plan.processor,
            model: plan.model,
            provider,
            http,
            prices: plan.prices,
            notices: Default::default(),
        })
    }

    pub(crate) fn provenance(&self) -> Provenance<'_> {
        Provenance {
            processor: &self.processor,
            model: &self.model,
            mode: "realtime",
            batch_job_id: None,
        }
    }

    /// The request body for an issue, exactly as a real-time call sends it (serialised with
    /// `serde_json::to_vec`, a batch JSONL line carries the same bytes). `None` for `rules`.
    pub fn request_body(&self, issue: &StoredIssue) -> Option<serde_json::Value> {
        let (prompt, _) = self.processor.prompt(issue);
        self.provider.request_body(&prompt, None)
    }

    /// Parses a provider response body and validates the answer: what batch collection does
    /// with a succeeded output line. The error is the reason, with the tokens it cost.
    pub fn parse_and_validate(&self, body: &[u8]) -> Result<(Validated, Usage), (String, Usage)> {
        let answer = self
            .provider
            .parse_response(body)
            .map_err(|e| (e.message, e.usage))?;
        self.processor
            .validate(&answer.value)
            .map(|v| (v, answer.usage))
            .map_err(|why| (why, answer.usage))
    }

    /// Processes one issue end to end, without storing anything.
    pub async fn process(&self, store: &Store, issue: IssueRef) -> ItemResult {
        let start = Instant::now();
        let stored = match crate::store::load_issue(store, &issue.file_path, &issue.id) {
            Ok(s) => s,
            Err(reason) => {
                return ItemResult::Failed {
                    issue,
                    reason,
                    usage: Usage::default(),
                    requests: 0,
                    run_wide: false,
                }
            }
        };
        // The rules model reads the issue itself: no prompt to build.
        let mut prompt_note = None;
        let outcome = match (&self.provider, &self.http) {
            (Provider::Rules, _) => {
                Ok((self.processor.offline(&stored), Usage::default(), 0, None))
            }
            (_, Some(http)) => {
                let (prompt, note) = self.processor.prompt(&stored);
                prompt_note = note;
                self.ask(http, &prompt).await
            }
            (_, None) => Err(CallFailure {
                reason: "no HTTP client for a network provider".into(),
                usage: Usage::default(),
                requests: 0,
                run_wide: true,
            }),
        };
        match outcome {
            Ok((validated, usage, requests, response_id)) => {
                let cost_usd = self.prices.cost(&self.model, &usage, false);
                ItemResult::Done(Box::new(Finished {
                    issue,
                    validated,
                    usage,
                    cost_usd,
                    processing_time_ms: start.elapsed().as_millis() as u64,
                    requests,
                    response_id,
                    prompt_note,
                }))
            }
            Err(f) => ItemResult::Failed {
                issue,
                reason: f.reason,
                usage: f.usage,
                requests: f.requests,
                run_wide: f.run_wide,
            },
        }
    }

    /// One request, and one repair request if the answer is invalid.
    async fn ask(
        &self,
        http: &HttpClient,
        prompt: &crate::ai::Prompt,
    ) -> Result<(Validated, Usage, u32, Option<String>), CallFailure> {
        let mut usage = Usage::default();
        let mut requests = 0u32;
        let problem = match self
            .call(http, prompt, None, &mut usage, &mut requests)
            .await?
        {
            Ok(answer) => match self.processor.validate(&answer.value) {
                Ok(v) => return Ok((v, usage, requests, answer.response_id)),
                Err(problem) => Repair {
                    replay: answer.replay,
                    problem,
                },
            },
            Err(AnswerError {
                message,
                replay: Some(replay),
                ..
            }) => Repair {
                replay,
                problem: message,
            },
            Err(AnswerError { message, .. }) => {
                return Err(CallFailure {
                    reason: format!("unusable response: {message}"),
                    usage,
                    requests,
                    run_wide: false,
                })
            }
        };
        tracing::debug!(
            "invalid answer ({}); sending one repair request",
            problem.problem
        );
        let first = problem.problem.clone();
        let fail = |why: String, usage: Usage, requests: u32| {
            CallFailure {
            reason: format!("invalid answer, still invalid after one repair request: {why} (first answer: {first})"),
            usage,
            requests,
            run_wide: false,
        }
        };
        match self
            .call(http, prompt, Some(&problem), &mut usage, &mut requests)
            .await?
        {
            Ok(answer) => match self.processor.validate(&answer.value) {
                Ok(v) => Ok((v, usage, requests, answer.response_id)),
                Err(why) => Err(fail(why, usage, requests)),
            },
            Err(e) => Err(fail(e.message, usage, requests)),
        }
    }

    /// Sends one request (with transport retries); an HTTP failure ends the item, except a 400
    /// refusing a parameter the adaptive fallback can change: then it is sent once more, changed.
    async fn call(
        &self,
        http: &HttpClient,
        prompt: &crate::ai::Prompt,
        repair: Option<&Repair>,
        usage: &mut Usage,
        requests: &mut u32,
    ) -> Result<Result<Answer, AnswerError>, CallFailure> {
        let mut adapted = false;
        loop {
            let body = self.provider.request_body(prompt, repair);
            let Some((body, req)) =
                body.and_then(|b| self.provider.http_request(&b).map(|r| (b, r)))
            else {
                return Err(CallFailure {
                    reason: "this provider sends no requests".into(),
                    usage: *usage,
                    requests: *requests,
                    run_wide: true,
                });
            };
            let HttpFailure { error, attempts } = match http.send(&req).await {
                Ok(ok) => {
                    *requests += ok.attempts;
                    let parsed = self.provider.parse_response(&ok.body);
                    match &parsed {
                        Ok(a) => usage.add(&a.usage),
                        Err(e) => usage.add(&e.usage),
                    }
                    return Ok(parsed);
                }
                Err(f) => f,
            };
            *requests += attempts;
            if !adapted {
                if let Some(note) = self.provider.adapt(&error, &body) {
                    self.notice(note);
                }
                // Changed since (by this answer or another worker's): send it once more.
                if self.provider.request_body(prompt, repair).as_ref() != Some(&body) {
                    adapted = true;
                    continue;
                }
            }
            let retried = if attempts > 1 {
                format!(" after {attempts} attempts")
            } else {
                String::new()
            };
            let hint = run_wide_hint(error.kind, &self.model);
            return Err(CallFailure {
                reason: format!(
                    "{} request failed{retried}: {error}{hint}",
                    self.model.provider.name()
                ),
                usage: *usage,
                requests: *requests,
                run_wide: error.is_run_wide(),
            });
        }
    }

    /// Queues a one-line notice for the user (the run shows them as they come).
    fn notice(&self, text: String) {
        tracing::info!("{text}");
        if let Ok(mut n) = self.notices.lock() {
            n.push(text);
        }
    }

    /// Notices queued since the last call.
    pub fn take_notices(&self) -> Vec<String> {
        self.notices
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }
}

/// What the user can do about an error that stops the whole run (appended to its reason).
fn run_wide_hint(kind: ErrorKind, model: &ModelSpec) -> String {
    match kind {
        ErrorKind::QuotaExceeded => " — the account is out of credit or quota: add credit \
             (or raise the limit) and run the same command again; stored results are kept \
             and not sent again"
            .into(),
        ErrorKind::NotFound => format!(
            " — the provider does not know model `{}` (or this key cannot use it): check \
             --model against the provider's model list",
            model.model
        ),
        ErrorKind::Auth => " — check the API key".into(),
        _ => String::new(),
    }
}

struct CallFailure {
    reason: String,
    usage: Usage,
    requests: u32,
    run_wide: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::{Endpoint, GenSettings, Secret};
    use crate::processors::Options;

    fn engine(model: &str) -> Engine {
        let spec = ModelSpec::parse(model).unwrap();
        let endpoint = Endpoint {
            base_url: "http://127.0.0.1:9".into(),
            key: Secret::new("k"),
        };
        Engine {
            processor: Processor::get("product-labeling", &Options::default()).unwrap(),
            model: spec.clone(),
            provider: Provider::new(&spec, Some(endpoint), GenSettings::default()).unwrap(),
            http: None,
            prices: PriceTable::builtin(),
            notices: Default::default(),
        }
    }

    fn issue() -> StoredIssue {
        let mut s = StoredIssue::new("o", "r", 1, "kotsadm crash");
        s.issue.body = Some("b".into());
        s
    }

    #[test]
    fn network_models_build_a_request_and_rules_none() {
        for model in ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"] {
            let body = engine(model).request_body(&issue()).unwrap();
            assert!(body.to_string().contains("kotsadm crash"), "{model}");
        }
        assert!(engine("rules").request_body(&issue()).is_none());
    }

    #[test]
    fn parse_and_validate_accepts_good_answers_and_explains_bad_ones() {
        let e = engine("anthropic:claude-haiku-4-5");
        let good = br#"{"content":[{"type":"tool_use","id":"t","name":"product_labeling","input":{"recommended_labels":[{"label":"product::kots","confidence":0.9,"reasoning":"r"}],"current_labels_assessment":[],"confidence":0.9,"summary":"s","reasoning":"r"}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5}}"#;
        let (v, u) = e.parse_and_validate(good).unwrap();
        assert_eq!(v.recommendations[0].value, "product::kots");
        assert_eq!(u.completion_tokens, 5);
        let bad = br#"{"content":[{"type":"tool_use","id":"t","name":"product_labeling","input":{"recommended_labels":[{"label":"x","confidence":0.9,"reasoning":"r"}],"current_labels_assessment":[],"confidence":0.9,"summary":"s","reasoning":"r"}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5}}"#;
        let (why, u) = e.parse_and_validate(bad).unwrap_err();
        assert!(why.contains("not in the taxonomy"));
        assert_eq!(u.prompt_tokens, 10);
    }
}
