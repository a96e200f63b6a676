//! `RateGate`: paces request starts across all workers of a run from the provider's
//! rate-limit headers — requests per minute, and tokens per minute planned from each request's
//! estimated tokens — and pauses everyone after a 429 or when the requests window runs dry.
//! docs/process.md, "Concurrency, rate limits, retries".
//!
//! The tokens-per-minute plan is a GCRA (generic cell rate algorithm) over tokens: the provider
//! refills its bucket at `limit / 60` tokens a second up to a capacity, and a request may start
//! once the bucket holds its estimated tokens. The limit comes from `x-ratelimit-limit-tokens`
//! (Anthropic: `anthropic-ratelimit-input-tokens-limit` / `-tokens-limit`), the capacity and the
//! current level from the remaining / reset headers of every answer, so the plan follows the
//! provider's own count (never more optimistic than it). Hand-written rather than `governor`:
//! its GCRA takes a fixed quota and keeps its state opaque, while here the limit is learned
//! during the run and the state is re-synchronised with the provider's count on every answer.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use crate::ai::errors::{parse_go_duration, until_rfc3339, MAX_SERVER_WAIT};

/// Paces request starts across all workers: a minimum interval learned from the provider's
/// requests-per-minute limit header, a tokens-per-minute plan, and a shared pause after a 429
/// or an exhausted requests window, so that one worker's rate-limit answer slows every worker
/// instead of each hitting it in turn.
#[derive(Debug, Default)]
pub struct RateGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    interval: Option<Duration>,
    next_slot: Option<Instant>,
    paused_until: Option<Instant>,
    tokens: Option<TokenPlan>,
    /// Requests booked and not answered yet (ticket → estimated tokens), in booking order.
    in_flight: BTreeMap<u64, u64>,
    next_ticket: u64,
}

/// The provider's tokens bucket as GCRA state: `tat` is the time at which the bucket would be
/// full again if nothing else were sent ("theoretical arrival time").
#[derive(Debug, Clone, Copy)]
struct TokenPlan {
    /// Seconds per token (60 / tokens-per-minute limit).
    per_token: f64,
    /// Bucket capacity in seconds of refill (`capacity × per_token`).
    tolerance: f64,
    tat: Instant,
}

impl TokenPlan {
    /// When a request of `cost` tokens may start, at the earliest `at`; books it.
    fn book(&mut self, at: Instant, cost: u64) -> Instant {
        // A request bigger than the bucket can never fit: it goes when the bucket is full.
        let need = (cost as f64 * self.per_token).min(self.tolerance);
        let tat = self.tat.max(at) + secs(need);
        let start = tat
            .checked_sub(secs(self.tolerance))
            .map_or(at, |s| s.max(at));
        self.tat = tat;
        start
    }

    /// Follows the provider's count: `remaining` tokens at `now` means the bucket is full at
    /// `now + (capacity − remaining) × per_token`; the later of that and the plan wins.
    fn sync(&mut self, now: Instant, remaining: u64) {
        let missing = (self.tolerance - remaining as f64 * self.per_token).max(0.0);
        self.tat = self.tat.max(now + secs(missing));
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.clamp(0.0, MAX_SERVER_WAIT.as_secs_f64())).unwrap_or_default()
}

impl RateGate {
    /// Waits for the turn of a request of `est_tokens` estimated tokens; the ticket names it in
    /// [`Self::observe`] / [`Self::abandoned`].
    pub async fn wait_turn(&self, est_tokens: u64) -> u64 {
        let (wait, ticket) = self.book(Instant::now(), est_tokens);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        ticket
    }

    /// Like [`Self::book`], without the ticket.
    #[cfg(test)]
    fn reserve(&self, now: Instant, est_tokens: u64) -> Duration {
        self.book(now, est_tokens).0
    }

    /// Takes the next start slot for a request of `est_tokens`: how long to wait for it from
    /// `now`, and the request's ticket.
    fn book(&self, now: Instant, est_tokens: u64) -> (Duration, u64) {
        let Ok(mut s) = self.state.lock() else {
            return (Duration::ZERO, 0);
        };
        let mut slot = now;
        if let Some(p) = s.paused_until {
            slot = slot.max(p);
        }
        if let Some(n) = s.next_slot {
            slot = slot.max(n);
        }
        if let Some(plan) = s.tokens.as_mut() {
            slot = plan.book(slot, est_tokens);
        }
        if let Some(i) = s.interval {
            s.next_slot = Some(slot + i);
        }
        s.next_ticket += 1;
        let ticket = s.next_ticket;
        s.in_flight.insert(ticket, est_tokens);
        (slot.saturating_duration_since(now), ticket)
    }

    /// The request with this ticket ended without an answer (a transport failure).
    pub fn abandoned(&self, ticket: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.in_flight.remove(&ticket);
        }
    }

    /// Learns the pace from the rate-limit headers of the answer to the request with `ticket`.
    pub fn observe(&self, headers: &HeaderMap, ticket: u64) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let number = |name: &str| {
            header(name)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        let rpm = number("x-ratelimit-limit-requests")
            .or_else(|| number("anthropic-ratelimit-requests-limit"))
            .filter(|v| *v >= 1.0);
        // The tokens window: OpenAI's, else Anthropic's input tokens (what a prompt draws), else
        // Anthropic's combined tokens. Reset: Go duration (OpenAI) or RFC 3339 time (Anthropic).
        let tokens_window = [
            ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens"),
            (
                "anthropic-ratelimit-input-tokens-limit",
                "anthropic-ratelimit-input-tokens-remaining",
            ),
            (
                "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining",
            ),
        ]
        .into_iter()
        .find_map(|(limit, remaining)| {
            let limit = number(limit).filter(|v| *v >= 1.0)?;
            let reset = if remaining.starts_with("x-") {
                header("x-ratelimit-reset-tokens").and_then(parse_go_duration)
            } else {
                header(&remaining.replace("-remaining", "-reset")).and_then(until_rfc3339)
            };
            Some((limit, number(remaining), reset))
        });
        // An exhausted requests window pauses everyone until it resets (the tokens window is
        // planned instead).
        let requests_pause = match (
            header("x-ratelimit-remaining-requests"),
            header("anthropic-ratelimit-requests-remaining"),
        ) {
            (Some("0"), _) => header("x-ratelimit-reset-requests").and_then(parse_go_duration),
            (_, Some("0")) => header("anthropic-ratelimit-requests-reset").and_then(until_rfc3339),
            _ => None,
        };
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else { return };
        s.in_flight.remove(&ticket);
        // The provider counted this request and those sent before it; the ones booked after it
        // are not in its count yet.
        let others: u64 = s.in_flight.range(ticket..).map(|(_, t)| t).sum();
        if let Some(rpm) = rpm {
            s.interval = Some(Duration::from_secs_f64(60.0 / rpm));
        }
        if let Some((limit, remaining, reset)) = tokens_window {
            let per_token = 60.0 / limit;
            // Capacity: what is left plus what refills until the bucket is full; a minute of
            // the limit when the headers do not say.
            let capacity = match (remaining, reset) {
                (Some(r), Some(d)) => (r + d.as_secs_f64() / per_token).min(limit),
                _ => limit,
            };
            let plan = s.tokens.get_or_insert(TokenPlan {
                per_token,
                tolerance: capacity * per_token,
                tat: now,
            });
            plan.per_token = per_token;
            plan.tolerance = capacity * per_token;
            if let Some(r) = remaining {
                plan.sync(now, (r as u64).saturating_sub(others));
            }
        }
        if let Some(d) = requests_pause {
            let until = later(d);
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        }
    }

    /// Holds every worker back until `delay` from now.
    pub fn pause_for(&self, delay: Duration) {
        let Ok(mut s) = self.state.lock() else { return };
        let until = later(delay);
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }
}

/// `delay` from now, clamped so that no delay can overflow the clock.
fn later(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay.min(MAX_SERVER_WAIT)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::errors::test_headers as headers;

    impl RateGate {
        fn observe_test(&self, h: &HeaderMap) {
            self.observe(h, 0);
        }
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_millis(50)
    }

    #[test]
    fn the_tokens_plan_spaces_requests_by_their_tokens() {
        let gate = RateGate::default();
        // 60,000 tokens a minute = 1,000 a second; the bucket (6,000) is full.
        gate.observe_test(&headers(&[
            ("x-ratelimit-limit-tokens", "60000"),
            ("x-ratelimit-remaining-tokens", "6000"),
            ("x-ratelimit-reset-tokens", "0s"),
        ]));
        let now = Instant::now();
        // The bucket holds three requests of 2,000 tokens; the fourth waits 2 s of refill.
        for _ in 0..3 {
            assert!(gate.reserve(now, 2_000) < Duration::from_millis(50));
        }
        let fourth = gate.reserve(now, 2_000);
        assert!(close(fourth, Duration::from_secs(2)), "{fourth:?}");
        let fifth = gate.reserve(now, 500);
        assert!(close(fifth, Duration::from_millis(2_500)), "{fifth:?}");
    }

    #[test]
    fn the_plan_follows_the_providers_count() {
        let gate = RateGate::default();
        // 1,000 tokens left of a 10,000 bucket refilling in 9 s: a 3,000-token request waits
        // for 2,000 more tokens (2 s at 1,000 a second).
        gate.observe_test(&headers(&[
            ("x-ratelimit-limit-tokens", "60000"),
            ("x-ratelimit-remaining-tokens", "1000"),
            ("x-ratelimit-reset-tokens", "9s"),
        ]));
        let wait = gate.reserve(Instant::now(), 3_000);
        assert!(close(wait, Duration::from_secs(2)), "{wait:?}");
        // Anthropic's input-tokens window with an RFC 3339 reset.
        let gate = RateGate::default();
        let reset = (chrono::Utc::now() + chrono::Duration::seconds(10)).to_rfc3339();
        gate.observe_test(&headers(&[
            ("anthropic-ratelimit-input-tokens-limit", "60000"),
            ("anthropic-ratelimit-input-tokens-remaining", "0"),
            ("anthropic-ratelimit-input-tokens-reset", &reset),
        ]));
        let wait = gate.reserve(Instant::now(), 1_000);
        assert!(
            wait > Duration::from_millis(800) && wait < Duration::from_millis(1_200),
            "{wait:?}"
        );
    }

    #[test]
    fn requests_booked_after_the_answered_one_are_taken_off_the_providers_count() {
        let gate = RateGate::default();
        let now = Instant::now();
        // Three requests of 2,000 tokens start before anything is known.
        let tickets: Vec<u64> = (0..3).map(|_| gate.book(now, 2_000).1).collect();
        // The answer to the second says 6,000 of a 10,000 bucket are left: it counted the first
        // two; the third, booked after it, still takes 2,000 of what is left.
        gate.observe(
            &headers(&[
                ("x-ratelimit-limit-tokens", "60000"),
                ("x-ratelimit-remaining-tokens", "6000"),
                ("x-ratelimit-reset-tokens", "4s"),
            ]),
            tickets[1],
        );
        let wait = gate.reserve(Instant::now(), 6_000);
        assert!(close(wait, Duration::from_secs(2)), "{wait:?}");
        for t in tickets {
            gate.abandoned(t);
        }
        assert_eq!(gate.state.lock().unwrap().in_flight.len(), 1);
    }

    #[test]
    fn gate_spaces_requests_by_the_learned_limit_and_pauses() {
        let gate = RateGate::default();
        let now = Instant::now();
        assert_eq!(gate.reserve(now, 0), Duration::ZERO);
        // 600 rpm = one start every 100 ms, across all callers.
        gate.observe_test(&headers(&[("x-ratelimit-limit-requests", "600")]));
        assert_eq!(gate.reserve(now, 0), Duration::ZERO);
        assert_eq!(gate.reserve(now, 0), Duration::from_millis(100));
        assert_eq!(gate.reserve(now, 0), Duration::from_millis(200));
        let gate = RateGate::default();
        gate.observe_test(&headers(&[("anthropic-ratelimit-requests-limit", "60000")]));
        gate.pause_for(Duration::from_secs(5));
        let wait = gate.reserve(Instant::now(), 0);
        assert!(
            !wait.is_zero() && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
        // An exhausted requests window pauses until its reset.
        let gate = RateGate::default();
        gate.observe_test(&headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "3s"),
        ]));
        let wait = gate.reserve(Instant::now(), 0);
        assert!(close(wait, Duration::from_secs(3)), "{wait:?}");
    }
}
