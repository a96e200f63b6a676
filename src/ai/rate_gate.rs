//! `RateGate`: paces request starts across all workers of a run from the provider's
//! rate-limit headers, and pauses everyone after a 429 or when a window runs dry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use crate::ai::errors::{
    exhausted_window_reset, parse_go_duration, until_rfc3339, MAX_SERVER_WAIT,
};

/// Paces request starts across all workers: a minimum interval learned from the provider's
/// requests-per-minute limit header, and a shared pause after a 429 or an exhausted window, so
/// that one worker's rate-limit answer slows every worker instead of each hitting it in turn.
#[derive(Debug, Default)]
pub struct RateGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    interval: Option<Duration>,
    next_slot: Option<Instant>,
    paused_until: Option<Instant>,
}

impl RateGate {
    /// Waits for this request's turn.
    pub async fn wait_turn(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes the next start slot and returns how long to wait for it from `now`.
    fn reserve(&self, now: Instant) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        let mut slot = now;
        if let Some(p) = s.paused_until {
            slot = slot.max(p);
        }
        if let Some(n) = s.next_slot {
            slot = slot.max(n);
        }
        if let Some(i) = s.interval {
            s.next_slot = Some(slot + i);
        }
        slot.saturating_duration_since(now)
    }

    /// Learns the pace from a response's rate-limit headers.
    pub fn observe(&self, headers: &HeaderMap) {
        self.observe_with_tokens(headers, 0);
    }

    /// Like [`Self::observe`]; also pauses everyone until the tokens window resets when it has
    /// fewer tokens left than a request like this one needs (`est_tokens`), so a
    /// tokens-per-minute limit is waited out instead of being hit by every worker.
    pub fn observe_with_tokens(&self, headers: &HeaderMap, est_tokens: u64) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let rpm = header("x-ratelimit-limit-requests")
            .or_else(|| header("anthropic-ratelimit-requests-limit"))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 1.0);
        let mut pause = exhausted_window_reset(headers);
        if est_tokens > 0 {
            let low = |remaining: Option<&str>| {
                remaining
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|left| left < est_tokens)
            };
            if low(header("x-ratelimit-remaining-tokens")) {
                let d = header("x-ratelimit-reset-tokens")
                    .and_then(parse_go_duration)
                    .map(|d| d.min(MAX_SERVER_WAIT));
                pause = pause.max(d);
            }
            for window in ["tokens", "input-tokens"] {
                if low(header(&format!("anthropic-ratelimit-{window}-remaining"))) {
                    let d = header(&format!("anthropic-ratelimit-{window}-reset"))
                        .and_then(until_rfc3339);
                    pause = pause.max(d);
                }
            }
        }
        let Ok(mut s) = self.state.lock() else { return };
        if let Some(rpm) = rpm {
            s.interval = Some(Duration::from_secs_f64(60.0 / rpm));
        }
        if let Some(d) = pause {
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

    #[test]
    fn a_nearly_empty_tokens_window_pauses_everyone_until_it_resets() {
        let gate = RateGate::default();
        let h = headers(&[
            ("x-ratelimit-remaining-tokens", "1500"),
            ("x-ratelimit-reset-tokens", "2s"),
        ]);
        gate.observe_with_tokens(&h, 1000);
        assert_eq!(
            gate.reserve(Instant::now()),
            Duration::ZERO,
            "enough tokens left"
        );
        gate.observe_with_tokens(&h, 2000);
        let wait = gate.reserve(Instant::now());
        assert!(
            !wait.is_zero() && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        let gate = RateGate::default();
        let later = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
        gate.observe_with_tokens(
            &headers(&[
                ("anthropic-ratelimit-input-tokens-remaining", "10"),
                ("anthropic-ratelimit-input-tokens-reset", &later),
            ]),
            500,
        );
        assert!(!gate.reserve(Instant::now()).is_zero());
    }

    #[test]
    fn gate_spaces_requests_by_the_learned_limit_and_pauses() {
        let gate = RateGate::default();
        let now = Instant::now();
        assert_eq!(gate.reserve(now), Duration::ZERO);
        // 600 rpm = one start every 100 ms, across all callers.
        gate.observe(&headers(&[("x-ratelimit-limit-requests", "600")]));
        assert_eq!(gate.reserve(now), Duration::ZERO);
        assert_eq!(gate.reserve(now), Duration::from_millis(100));
        assert_eq!(gate.reserve(now), Duration::from_millis(200));
        let gate = RateGate::default();
        gate.observe(&headers(&[("anthropic-ratelimit-requests-limit", "60000")]));
        gate.pause_for(Duration::from_secs(5));
        let wait = gate.reserve(Instant::now());
        assert!(
            !wait.is_zero() && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
    }
}
