//! The provider's queue limits (docs/batch.md, "Provider queue limits"): a part refused for
//! its size (too many requests, too many bytes) is re-split; a part refused because the
//! model's enqueued-token budget is full waits as `queued` and is submitted by a later
//! `batch status` (or `--wait`) once earlier parts have ended. The limits a refusal reveals
//! are learned per provider and model, so later jobs are split to fit from the start.

use crate::ai::http::{ApiError, ErrorKind};
use crate::ai::ProviderKind;
use crate::batch::inputs::write_inputs;
use crate::batch::{now, BatchManager, Caps, Loaded};
use crate::db::{Backend, BatchPart, LearnedLimits, PartStatus};
use crate::env;
use crate::error::user;

/// What a refused create or a failed batch says about the provider's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many requests in one batch (the provider's cap, when it says it).
    Requests(Option<u64>),
    /// Too many bytes in one batch.
    Bytes,
    /// The model's enqueued-token budget is full (the budget, when the provider says it).
    EnqueuedTokens(Option<u64>),
}

/// The first number after `marker` in `text` (`2,000,000` → 2000000).
fn number_after(text: &str, marker: &str) -> Option<u64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '_')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The refusal an error text describes (an answer's error or a failed batch's errors).
pub(crate) fn refusal_in(code: Option<&str>, text: &str) -> Option<Refusal> {
    let lower = text.to_ascii_lowercase();
    let has = |s: &str| code == Some(s) || lower.contains(s);
    if has("token_limit_exceeded") || lower.contains("enqueued token limit") {
        return Some(Refusal::EnqueuedTokens(number_after(text, "Limit:")));
    }
    if has("too_many_tasks") || lower.contains("requests per batch") {
        return Some(Refusal::Requests(number_after(&lower, "maximum of")));
    }
    if has("file_too_large") || lower.contains("too large") || lower.contains("request_too_large") {
        return Some(Refusal::Bytes);
    }
    None
}

/// The refusal a create's error is, if it is one.
pub(crate) fn create_refusal(e: &ApiError) -> Option<Refusal> {
    if e.kind == ErrorKind::TooLarge || e.status == Some(413) {
        return Some(Refusal::Bytes);
    }
    if !matches!(
        e.kind,
        ErrorKind::BadRequest | ErrorKind::Other | ErrorKind::RateLimited
    ) {
        return None;
    }
    refusal_in(e.code.as_deref(), &e.message)
}

/// Whether a part may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    Fits,
    /// The queue is full: wait for earlier parts to end.
    Wait,
    /// The part alone is over the budget: split it to this many tokens a part.
    Split(u64),
}

impl BatchManager<'_> {
    /// The enqueued-token budget of the job's model: the setting and the learned limit, the
    /// lower of the two.
    pub(crate) fn token_budget(&self, l: &Loaded) -> anyhow::Result<Option<u64>> {
        self.budget_of(l.job.provider, &l.job.model)
    }

    fn budget_of(&self, provider: Backend, model: &str) -> anyhow::Result<Option<u64>> {
        let set = match (self.env)(env::ENQUEUED_TOKEN_BUDGET) {
            Some(v) if !v.trim().is_empty() => Some(
                v.trim()
                    .replace(['_', ','], "")
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        user(format!(
                            "{}={v:?}: expected a whole number of tokens ≥ 1",
                            env::ENQUEUED_TOKEN_BUDGET
                        ))
                    })?,
            ),
            _ => None,
        };
        let learned = self
            .db
            .batch_limits(provider, model)?
            .enqueued_tokens
            .and_then(|n| u64::try_from(n).ok());
        Ok(match (set, learned) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The provider's caps for a job's parts, lowered by what earlier refusals taught.
    pub(crate) fn job_caps(&self, l: &Loaded) -> anyhow::Result<Caps> {
        self.caps_of(l.plan.model.provider, l.job.provider, &l.job.model)
    }

    /// The caps of a provider and model (what a dry run splits to, too).
    pub(crate) fn caps_of(
        &self,
        kind: ProviderKind,
        provider: Backend,
        model: &str,
    ) -> anyhow::Result<Caps> {
        let mut caps = Caps::for_provider(kind, self.env)?;
        let learned = self.db.batch_limits(provider, model)?;
        if let Some(n) = learned.max_requests.and_then(|n| usize::try_from(n).ok()) {
            caps.max_requests = caps.max_requests.min(n.max(1));
        }
        if let Some(b) = self.budget_of(provider, model)? {
            caps.max_tokens = b;
        }
        Ok(caps)
    }

    /// Whether part `p` fits in the provider's queue next to what is already there.
    pub(crate) fn room_for(&self, l: &Loaded, p: &BatchPart) -> anyhow::Result<Room> {
        let Some(budget) = self.token_budget(l)? else {
            return Ok(Room::Fits);
        };
        let mine = u64::try_from(p.est_tokens).unwrap_or(0);
        let queued =
            u64::try_from(self.db.enqueued_tokens(l.job.provider, &l.job.model)?).unwrap_or(0);
        Ok(if mine > budget && p.request_count > 1 {
            Room::Split(budget)
        } else if queued > 0 && queued + mine > budget {
            Room::Wait
        } else {
            // Alone in the queue a part is always tried: the provider counts tokens its own
            // way, and a refusal then splits it further.
            Room::Fits
        })
    }

    /// Marks a part as waiting for room in the provider's queue.
    pub(crate) fn queue_part(&mut self, p: &mut BatchPart, why: &str) -> anyhow::Result<()> {
        if p.status != PartStatus::Queued {
            self.reporter.note(&format!(
                "job {} part {}: {why}; queued until earlier batches end (`batch status` submits it)",
                p.job_id, p.part
            ));
        }
        p.status = PartStatus::Queued;
        p.updated_at = Some(now());
        self.db.upsert_batch_part(p)
    }

    /// Learns what a refusal says about the job's model.
    pub(crate) fn learn(&mut self, l: &Loaded, r: Refusal, source: &str) -> anyhow::Result<()> {
        let learned = match r {
            Refusal::Requests(Some(n)) => LearnedLimits {
                max_requests: i64::try_from(n).ok(),
                ..Default::default()
            },
            Refusal::EnqueuedTokens(Some(n)) => LearnedLimits {
                enqueued_tokens: i64::try_from(n).ok(),
                ..Default::default()
            },
            _ => return Ok(()),
        };
        self.db
            .learn_batch_limits(l.job.provider, &l.job.model, learned, source)
    }

    /// Replaces part `p` by smaller parts holding its open items, numbered after the job's
    /// last part, each within `caps`. With `keep_old` the old part stays (it exists at the
    /// provider, as a failed batch); otherwise it and its input file go. Returns how many parts
    /// were made.
    pub(crate) fn split_part(
        &mut self,
        l: &Loaded,
        p: &BatchPart,
        caps: Caps,
        keep_old: bool,
        status: PartStatus,
    ) -> anyhow::Result<usize> {
        let job_id = l.job.job_id.clone();
        let items = self.db.open_part_items(&job_id, p.part)?;
        if items.is_empty() {
            return Ok(0);
        }
        let next = self
            .db
            .batch_parts(&job_id)?
            .iter()
            .map(|q| q.part)
            .max()
            .unwrap_or(0)
            + 1;
        let written = write_inputs(
            self.store,
            &l.plan,
            &l.provider,
            caps,
            &job_id,
            &items,
            true,
            next,
        )?;
        let parts = written.part_rows(&job_id, status);
        self.db
            .split_batch_part(&job_id, p.part, keep_old, &parts)?;
        if !keep_old {
            if let Some(path) = &p.input_path {
                let _ = std::fs::remove_file(self.store.abs(path));
            }
        }
        Ok(parts.len())
    }

    /// Caps that split `p` in two (at least one request a part).
    pub(crate) fn halved(p: &BatchPart, caps: Caps) -> Caps {
        let half = |n: i64| u64::try_from(n / 2 + n % 2).unwrap_or(1).max(1);
        Caps {
            max_requests: caps
                .max_requests
                .min(usize::try_from(half(p.request_count)).unwrap_or(1)),
            max_bytes: caps.max_bytes,
            max_tokens: caps.max_tokens,
        }
    }

    /// After a refresh: parts the provider failed because the model's queue was full ran
    /// nothing, so their items move to new `queued` parts (the failed batch stays recorded).
    /// A part refused while nothing else was queued is split in two instead of waiting.
    pub(crate) fn requeue_refused(&mut self, l: &mut Loaded) -> anyhow::Result<()> {
        let parts = self.db.batch_parts(&l.job.job_id)?;
        for p in parts {
            if p.status != PartStatus::Failed || p.collected_at.is_some() {
                continue;
            }
            let Some(Refusal::EnqueuedTokens(limit)) =
                p.error_message.as_deref().and_then(|m| refusal_in(None, m))
            else {
                continue;
            };
            if self.db.batch_part_item_counts(&l.job.job_id, p.part)?.2 == 0 {
                continue;
            }
            self.learn(l, Refusal::EnqueuedTokens(limit), "token_limit_exceeded")?;
            let mut caps = self.job_caps(l)?;
            let alone = self.db.enqueued_tokens(l.job.provider, &l.job.model)? == 0;
            if alone && p.request_count > 1 {
                caps = Self::halved(&p, caps);
            }
            let n = self.split_part(l, &p, caps, true, PartStatus::Queued)?;
            self.reporter.warn(&format!(
                "job {} part {}: {} refused it (the model's enqueued-token limit); its {} request(s) wait in {n} queued part(s)",
                l.job.job_id,
                p.part,
                l.job.provider,
                p.request_count
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_read_from_the_providers_words() {
        assert_eq!(
            refusal_in(
                Some("token_limit_exceeded"),
                "Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches have been completed."
            ),
            Some(Refusal::EnqueuedTokens(Some(2_000_000)))
        );
        assert_eq!(
            refusal_in(
                None,
                "part 2: token_limit_exceeded: Enqueued token limit reached"
            ),
            Some(Refusal::EnqueuedTokens(None))
        );
        assert_eq!(
            refusal_in(
                Some("too_many_tasks"),
                "The batch exceeds the maximum of 40 requests per batch."
            ),
            Some(Refusal::Requests(Some(40)))
        );
        assert_eq!(
            refusal_in(
                None,
                "Request exceeds the maximum allowed number of bytes, too large"
            ),
            Some(Refusal::Bytes)
        );
        assert_eq!(
            refusal_in(Some("invalid_api_key"), "Incorrect API key"),
            None
        );
    }
}
