//! Pacing of the requests that change things on GitHub (labels, comments), after GitHub's
//! documented secondary limits for content-creating requests: at most ~80 per minute and 500 per
//! hour, and no concurrency — plus its advice to leave at least a second between mutating
//! requests. Every write (DELETEs too: GitHub does not say which mutations it counts, so all
//! are) waits for its slot, one at a time; retries of the shared HTTP loop wait too. Reads are
//! not paced here: the primary rate limit and its headers govern them.
//!
//! [`Schedule`] is the pure rule on a clock of seconds (so benchmarks can compute the real wall
//! time of N writes without waiting it); [`Pacer`] runs it on tokio's clock. A scale multiplies
//! every interval: 1 is GitHub's limits, 0 turns pacing off (tests, benchmarks against a fake).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::report::Reporter;

/// GitHub's limits for content-creating requests, and its advice on spacing mutating ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteLimits {
    /// Smallest gap between two writes (seconds).
    pub gap: f64,
    pub per_minute: usize,
    pub per_hour: usize,
}

/// The documented limits (REST best practices and secondary rate limits).
pub const GITHUB_WRITE_LIMITS: WriteLimits = WriteLimits {
    gap: 1.0,
    per_minute: 80,
    per_hour: 500,
};

const MINUTE: f64 = 60.0;
const HOUR: f64 = 3600.0;

/// When writes may go out, on a clock of seconds. Times never go backwards.
#[derive(Debug, Clone)]
pub struct Schedule {
    limits: WriteLimits,
    scale: f64,
    /// Send times of the last hour (scaled), oldest first.
    sent: VecDeque<f64>,
}

impl Schedule {
    pub fn new(limits: WriteLimits, scale: f64) -> Self {
        Self {
            limits,
            scale: if scale.is_finite() {
                scale.max(0.0)
            } else {
                1.0
            },
            sent: VecDeque::new(),
        }
    }

    /// The earliest time at or after `now` when the next write may go.
    pub fn next_at(&self, now: f64) -> f64 {
        let mut t = now;
        let n = self.sent.len();
        if let Some(last) = self.sent.back() {
            t = t.max(last + self.limits.gap * self.scale);
        }
        // With sorted send times, fewer than k sends fall in (t - w, t] exactly when the k-th
        // latest was at or before t - w.
        for (k, w) in [
            (self.limits.per_minute, MINUTE),
            (self.limits.per_hour, HOUR),
        ] {
            if k > 0 && n >= k {
                if let Some(kth) = self.sent.get(n - k) {
                    t = t.max(kth + w * self.scale);
                }
            }
        }
        t
    }

    /// Records a write sent at `t` (also for writes of an earlier run, oldest first).
    pub fn record(&mut self, t: f64) {
        self.sent.push_back(t);
        let horizon = t - HOUR * self.scale;
        while self.sent.front().is_some_and(|s| *s <= horizon) {
            self.sent.pop_front();
        }
    }

    /// Wall time of `writes` writes from an empty schedule, each taking `request` seconds.
    pub fn simulate(limits: WriteLimits, writes: usize, request: f64) -> f64 {
        let mut s = Self::new(limits, 1.0);
        let mut now = 0.0;
        for _ in 0..writes {
            let t = s.next_at(now);
            s.record(t);
            now = t + request;
        }
        now
    }
}

/// Runs the schedule on tokio's clock: one write at a time, each in its slot.
pub struct Pacer {
    schedule: Mutex<Schedule>,
    origin: tokio::time::Instant,
    /// Held for a whole write (all its attempts): GitHub asks for no concurrent writes.
    turn: tokio::sync::Mutex<()>,
    writes: AtomicU64,
    waited_ms: AtomicU64,
    reporter: Arc<dyn Reporter>,
}

/// Waits longer than this are announced (the hourly window can mean most of an hour).
const ANNOUNCE: Duration = Duration::from_secs(10);

impl Pacer {
    pub fn new(scale: f64, reporter: Arc<dyn Reporter>) -> Self {
        Self {
            schedule: Mutex::new(Schedule::new(GITHUB_WRITE_LIMITS, scale)),
            origin: tokio::time::Instant::now(),
            turn: tokio::sync::Mutex::new(()),
            writes: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
            reporter,
        }
    }

    /// Counts writes sent `ago` (oldest first), e.g. by an earlier run within the hour.
    pub fn seed(&self, ago: Duration) {
        if let Ok(mut s) = self.schedule.lock() {
            s.record(-ago.as_secs_f64());
        }
    }

    /// One write at a time: hold the guard for the whole request, retries included.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Waits for the next slot and books it (called before every attempt of a write).
    pub async fn space(&self) {
        let now = self.origin.elapsed().as_secs_f64();
        let at = match self.schedule.lock() {
            Ok(s) => s.next_at(now),
            Err(_) => now,
        };
        let wait = Duration::from_secs_f64((at - now).max(0.0));
        if wait > ANNOUNCE {
            self.reporter.note(&format!(
                "pacing GitHub writes (at most {} per minute and {} per hour): waiting {}s",
                GITHUB_WRITE_LIMITS.per_minute,
                GITHUB_WRITE_LIMITS.per_hour,
                wait.as_secs()
            ));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            self.waited_ms
                .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
        }
        let sent = self.origin.elapsed().as_secs_f64().max(at);
        if let Ok(mut s) = self.schedule.lock() {
            s.record(sent);
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Write attempts sent so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Time spent waiting for slots.
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_a_second_apart_and_500_per_hour() {
        // 500 writes fit in the first hour, a second apart; the 501st waits for the first to
        // leave the hour window.
        assert_eq!(Schedule::simulate(GITHUB_WRITE_LIMITS, 1, 0.0), 0.0);
        assert_eq!(Schedule::simulate(GITHUB_WRITE_LIMITS, 500, 0.0), 499.0);
        assert_eq!(Schedule::simulate(GITHUB_WRITE_LIMITS, 501, 0.0), 3600.0);
        assert_eq!(
            Schedule::simulate(GITHUB_WRITE_LIMITS, 1000, 0.0),
            3600.0 + 499.0
        );
        // Requests slower than the gap are not slowed down further.
        assert_eq!(Schedule::simulate(GITHUB_WRITE_LIMITS, 3, 2.0), 6.0);
        // The minute limit binds when the gap is shorter than 60/80 s.
        let fast = WriteLimits {
            gap: 0.0,
            ..GITHUB_WRITE_LIMITS
        };
        assert_eq!(Schedule::simulate(fast, 80, 0.0), 0.0);
        assert_eq!(Schedule::simulate(fast, 81, 0.0), 60.0);
    }

    #[test]
    fn earlier_writes_count_and_scale_zero_turns_pacing_off() {
        let mut s = Schedule::new(GITHUB_WRITE_LIMITS, 1.0);
        for i in 0..500 {
            s.record(-3000.0 + f64::from(i));
        }
        // The hour's budget was spent by an earlier run 50 minutes ago: wait 10 minutes.
        assert_eq!(s.next_at(0.0), 600.0);
        let mut off = Schedule::new(GITHUB_WRITE_LIMITS, 0.0);
        for _ in 0..1000 {
            let t = off.next_at(5.0);
            assert_eq!(t, 5.0);
            off.record(t);
        }
        let half = Schedule::simulate(GITHUB_WRITE_LIMITS, 10, 0.0);
        let mut scaled = Schedule::new(GITHUB_WRITE_LIMITS, 0.5);
        let mut now = 0.0;
        for _ in 0..10 {
            now = scaled.next_at(now);
            scaled.record(now);
        }
        assert_eq!(now, half * 0.5);
    }
}
