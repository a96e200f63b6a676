//! The one HTTP retry loop, shared by every client (AI providers, provider batch APIs, GitHub):
//! build a request (a factory, since a streamed body cannot be replayed), send it, let the
//! client judge the answer — done, final failure, or retry after a delay — and wait. Each client
//! keeps its own knowledge (error envelopes, rate-limit headers, budgets); the loop owns the
//! attempt count, the exponential backoff with jitter and the waiting. Large transfers use the
//! same loop with an idle timeout instead of a whole-request one ([`send_watched`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

/// Exponential backoff with jitter: `min`, 2×`min`, 4×`min`, … up to `max`, `times` delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    pub times: u32,
}

impl Backoff {
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.times as usize)
            .build()
    }
}

/// What a client makes of one attempt.
#[derive(Debug)]
pub enum Verdict<T, E, R = ()> {
    /// The answer it wanted.
    Done(T),
    /// A final failure: no retry can help, or the client's budget is spent.
    Fail(E),
    /// Try again: after `after` (a delay the server asked for), or after the next backoff
    /// delay; `error` is returned if the backoff has no delay left. `reason` goes to the pause.
    Retry {
        error: E,
        after: Option<Duration>,
        reason: R,
    },
}

/// Sends requests until the judge accepts an answer or gives up.
///
/// * `request(n)` builds attempt `n` (from 1); it may wait first (rate pacing) and may fail.
/// * `judge(n, sent)` decides what the answer (or the transport failure) means.
/// * `pause(reason, delay)` waits before the next attempt (sleeping, saying why, and whatever
///   the client's pacing needs).
///
/// The closures return futures that own what they use (shared references and atomics), so the
/// whole call stays `Send` for spawned tasks.
pub async fn send<T, E, R, RF, JF, PF>(
    backoff: Backoff,
    request: impl FnMut(u32) -> RF,
    judge: impl FnMut(u32, Result<reqwest::Response, reqwest::Error>) -> JF,
    pause: impl FnMut(R, Duration) -> PF,
) -> Result<T, E>
where
    RF: Future<Output = Result<reqwest::RequestBuilder, E>>,
    JF: Future<Output = Verdict<T, E, R>>,
    PF: Future<Output = ()>,
{
    retry_loop(backoff, request, |b| b.send(), judge, pause).await
}

/// [`send`] for large uploads and downloads: no whole-request deadline (a slow uplink moving
/// 200 MB would miss any fixed one) but an idle one. An attempt whose bytes stop moving for
/// `idle` is dropped and judged as [`Transfer::Stalled`]; once an upload's body is all sent,
/// the wait for the answer is bounded by the activity's answer wait instead
/// ([`Transfer::NoAnswer`]: a server may take a while with 200 MB). `activity` is what the body
/// stream (upload) and the judge (download) report moved bytes to; it restarts per attempt.
pub async fn send_watched<T, E, R, RF, JF, PF>(
    backoff: Backoff,
    idle: Duration,
    activity: &Activity,
    request: impl FnMut(u32) -> RF,
    judge: impl FnMut(u32, Result<reqwest::Response, Transfer>) -> JF,
    pause: impl FnMut(R, Duration) -> PF,
) -> Result<T, E>
where
    RF: Future<Output = Result<reqwest::RequestBuilder, E>>,
    JF: Future<Output = Verdict<T, E, R>>,
    PF: Future<Output = ()>,
{
    let transmit = |b: reqwest::RequestBuilder| async move {
        activity.restart();
        match idle_bounded(idle, activity, b.send()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(Transfer::Http(e)),
            Err(stalled) => Err(stalled),
        }
    };
    retry_loop(backoff, request, transmit, judge, pause).await
}

/// The one loop behind [`send`] and [`send_watched`]; `transmit` sends a built request.
async fn retry_loop<T, E, R, S, RF, SF, JF, PF>(
    backoff: Backoff,
    mut request: impl FnMut(u32) -> RF,
    mut transmit: impl FnMut(reqwest::RequestBuilder) -> SF,
    mut judge: impl FnMut(u32, S) -> JF,
    mut pause: impl FnMut(R, Duration) -> PF,
) -> Result<T, E>
where
    RF: Future<Output = Result<reqwest::RequestBuilder, E>>,
    SF: Future<Output = S>,
    JF: Future<Output = Verdict<T, E, R>>,
    PF: Future<Output = ()>,
{
    let mut delays = backoff.delays();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sent = transmit(request(attempt).await?).await;
        match judge(attempt, sent).await {
            Verdict::Done(t) => return Ok(t),
            Verdict::Fail(e) => return Err(e),
            Verdict::Retry {
                error,
                after,
                reason,
            } => {
                let Some(delay) = after.or_else(|| delays.next()) else {
                    return Err(error);
                };
                pause(reason, delay).await;
            }
        }
    }
}

/// Why a watched transfer attempt failed.
#[derive(Debug)]
pub enum Transfer {
    /// What reqwest reports (connect timeout, reset, refused, TLS…).
    Http(reqwest::Error),
    /// No byte moved in either direction for this long.
    Stalled(Duration),
    /// The whole body was sent, and no answer came for this long.
    NoAnswer(Duration),
}

/// Bytes a transfer moved and when they last moved: the clock of an idle timeout. Shared by
/// the body stream, the download loop and the watchdog.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    /// Milliseconds after `origin` at which bytes last moved.
    last_ms: AtomicU64,
    bytes: AtomicU64,
    /// Set when an upload's body has been handed over entirely.
    sent: AtomicBool,
    /// How long the answer may take once the body is sent.
    answer_wait: Duration,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

impl Activity {
    /// An activity whose answer, once the body is sent, may take `answer_wait` (at least the
    /// idle timeout).
    pub fn new(answer_wait: Duration) -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            sent: AtomicBool::new(false),
            answer_wait,
        }
    }

    /// The body is all sent: from now on the answer wait applies.
    pub fn body_sent(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
        self.sent.store(true, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `n` bytes moved now.
    pub fn moved(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A new attempt: nothing moved yet, and the idle clock starts now.
    pub fn restart(&self) {
        self.sent.store(false, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Bytes moved by the current attempt.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn idle_for(&self) -> Duration {
        let last = self.last_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }
}

/// Runs `fut` to its end, or gives up with [`Transfer::Stalled`] once `activity` has not moved
/// for `idle` (or [`Transfer::NoAnswer`] after the answer wait, once the body is sent),
/// dropping `fut`, which closes its connection.
pub async fn idle_bounded<F: Future>(
    idle: Duration,
    activity: &Activity,
    fut: F,
) -> Result<F::Output, Transfer> {
    tokio::pin!(fut);
    loop {
        let sent = activity.sent.load(Ordering::Relaxed);
        let limit = if sent {
            activity.answer_wait.max(idle)
        } else {
            idle
        };
        let left = limit.saturating_sub(activity.idle_for());
        if left.is_zero() {
            return Err(if sent {
                Transfer::NoAnswer(limit)
            } else {
                Transfer::Stalled(limit)
            });
        }
        tokio::select! {
            out = &mut fut => return Ok(out),
            () = tokio::time::sleep(left) => {}
        }
    }
}

/// The whole source chain of an error, `: `-joined (reqwest's own text hides the cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(times: u32) -> Backoff {
        Backoff {
            min: Duration::from_millis(1),
            max: Duration::from_millis(2),
            times,
        }
    }

    #[tokio::test]
    async fn retries_until_done_and_stops_when_the_backoff_is_spent() {
        let client = reqwest::Client::new();
        // Port 9 (discard) on loopback: nothing listens, every send fails fast.
        let url = "http://127.0.0.1:9/";
        let request = |_| {
            let c = client.get(url);
            async move { Ok::<_, String>(c) }
        };
        let paused = AtomicU32::new(0);
        let got: Result<u32, String> = send(
            quick(5),
            request,
            |n, _| async move {
                if n == 3 {
                    Verdict::Done(n)
                } else {
                    Verdict::Retry {
                        error: format!("attempt {n}"),
                        after: None,
                        reason: (),
                    }
                }
            },
            |_, _| {
                paused.fetch_add(1, Ordering::SeqCst);
                async {}
            },
        )
        .await;
        assert_eq!(got, Ok(3));
        assert_eq!(paused.load(Ordering::SeqCst), 2);

        let got: Result<u32, String> = send(
            quick(2),
            request,
            |n, _| async move {
                Verdict::Retry {
                    error: format!("attempt {n}"),
                    after: None,
                    reason: (),
                }
            },
            |_, _| async {},
        )
        .await;
        // Two delays: three attempts, then the last error.
        assert_eq!(got, Err("attempt 3".to_string()));

        // A server-given delay is used even when the backoff has none left.
        let got: Result<u32, String> = send(
            quick(0),
            request,
            |n, _| async move {
                if n < 3 {
                    Verdict::Retry {
                        error: "busy".into(),
                        after: Some(Duration::from_millis(1)),
                        reason: (),
                    }
                } else {
                    Verdict::Fail(format!("final {n}"))
                }
            },
            |_, _| async {},
        )
        .await;
        assert_eq!(got, Err("final 3".to_string()));
    }

    #[tokio::test]
    async fn a_transfer_that_keeps_moving_outlives_the_idle_timeout_and_a_stalled_one_fails() {
        let idle = Duration::from_millis(400);
        let activity = Activity::default();
        activity.restart();
        // Thirty small moves 20 ms apart: 600 ms in all, longer than the idle timeout, but
        // never idle for long.
        let moving = async {
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                activity.moved(10);
            }
            activity.bytes()
        };
        let got = idle_bounded(idle, &activity, moving).await;
        assert!(matches!(got, Ok(300)), "{got:?}");

        activity.restart();
        let stalled = idle_bounded(idle, &activity, futures::future::pending::<()>()).await;
        assert!(
            matches!(stalled, Err(Transfer::Stalled(d)) if d == idle),
            "{stalled:?}"
        );

        // Once the body is sent, the answer may take the (longer) answer wait.
        let waiting = Activity::new(Duration::from_millis(900));
        waiting.restart();
        waiting.body_sent();
        let slow_answer = async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "answer"
        };
        let got = idle_bounded(idle, &waiting, slow_answer).await;
        assert!(matches!(got, Ok("answer")), "{got:?}");
        waiting.restart();
        waiting.body_sent();
        let none = idle_bounded(idle, &waiting, futures::future::pending::<()>()).await;
        assert!(
            matches!(none, Err(Transfer::NoAnswer(d)) if d == Duration::from_millis(900)),
            "{none:?}"
        );
    }
}
