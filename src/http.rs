//! The one HTTP retry loop, shared by every client (AI providers, provider batch APIs, GitHub):
//! build a request (a factory, since a streamed body cannot be replayed), send it, let the
//! client judge the answer — done, final failure, or retry after a delay — and wait. Each client
//! keeps its own knowledge (error envelopes, rate-limit headers, budgets); the loop owns the
//! attempt count, the exponential backoff with jitter and the waiting.

use std::future::Future;
use std::time::Duration;

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
    mut request: impl FnMut(u32) -> RF,
    mut judge: impl FnMut(u32, Result<reqwest::Response, reqwest::Error>) -> JF,
    mut pause: impl FnMut(R, Duration) -> PF,
) -> Result<T, E>
where
    RF: Future<Output = Result<reqwest::RequestBuilder, E>>,
    JF: Future<Output = Verdict<T, E, R>>,
    PF: Future<Output = ()>,
{
    let mut delays = backoff.delays();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sent = request(attempt).await?.send().await;
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
}
