//! Seeded fault mode: a share of the requests to the batch routes fail before the handler runs
//! (429 with `retry-after-ms`, 500, 503, or a timeout: the answer is held back past the client's
//! timeout and then refused), and a share of the request lines get invalid answers or per-line
//! errors. Deterministic for a seed and a request order. Faults are decided before anything is
//! created, so a faulted request never has an effect: a client that retries is never billed
//! twice by it (the ambiguous "created, then the answer was lost" case has its own tests).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::routes::{error, kind_of};
use super::{lock, LineCall, LineReply, LineScript, Shared};

/// Injected request faults by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub rate_limited: usize,
    pub server_error: usize,
    pub unavailable: usize,
    pub timeout: usize,
}

impl Injected {
    pub fn total(&self) -> usize {
        self.rate_limited + self.server_error + self.unavailable + self.timeout
    }
}

/// The fault mode of a fake.
#[derive(Debug)]
pub struct Chaos {
    state: u64,
    /// Share of requests that fail, in [0, 1].
    rate: f64,
    /// How long a "timeout" answer is held back (longer than the client waits).
    hold: Duration,
    pub injected: Injected,
    /// Requests that reached the fake while the mode was on (faulted or not).
    pub seen: usize,
}

impl Chaos {
    pub fn new(seed: u64, rate: f64, hold: Duration) -> Self {
        Self {
            state: seed,
            rate,
            hold,
            injected: Injected::default(),
            seen: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.state)
    }
}

/// SplitMix64's output function: a well-mixed 64-bit value of `z`.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// What a faulted request gets.
enum Fault {
    Status(u16),
    Timeout(Duration),
}

/// The axum middleware: maybe a fault, else the route.
pub async fn layer(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let fault = {
        let mut g = lock(&st);
        match g.chaos.as_mut() {
            Some(c) => {
                c.seen += 1;
                let hit = unit(c.next()) < c.rate;
                let pick = c.next() % 4;
                hit.then(|| match pick {
                    0 => {
                        c.injected.rate_limited += 1;
                        Fault::Status(429)
                    }
                    1 => {
                        c.injected.server_error += 1;
                        Fault::Status(500)
                    }
                    2 => {
                        c.injected.unavailable += 1;
                        Fault::Status(503)
                    }
                    _ => {
                        c.injected.timeout += 1;
                        Fault::Timeout(c.hold)
                    }
                })
            }
            None => None,
        }
    };
    let kind = kind_of(&path);
    match fault {
        None => next.run(req).await,
        Some(Fault::Status(429)) => error(
            kind,
            429,
            "rate_limit_error",
            "Rate limit reached; please try again in 5ms.",
        ),
        Some(Fault::Status(s)) => error(kind, s, "server_error", "Injected server error"),
        Some(Fault::Timeout(hold)) => {
            tokio::time::sleep(hold).await;
            error(kind, 504, "server_error", "Gateway timeout")
        }
    }
}

/// A line script: a share `rate` of the lines (by a hash of their custom id and the seed) get
/// an answer that fails validation or a per-line 429/500 error; the rest `ok`.
pub fn seeded_lines(seed: u64, rate: f64, ok: LineScript) -> LineScript {
    Arc::new(move |c: &LineCall| {
        let h = c
            .custom_id
            .bytes()
            .fold(seed, |a, b| splitmix(a ^ u64::from(b)));
        if unit(h) >= rate {
            return ok(c);
        }
        match splitmix(h) % 3 {
            0 => LineReply::Invalid(json!({
                "recommended_labels": [{"label": "no-such-label", "confidence": 0.9,
                    "reasoning": "invented"}],
                "current_labels_assessment": [],
                "confidence": 0.5,
                "summary": "An issue.",
                "reasoning": "Injected invalid answer."
            })),
            1 => LineReply::HttpError {
                status: 429,
                message: "Rate limit reached for requests".into(),
            },
            _ => LineReply::HttpError {
                status: 500,
                message: "The server had an error while processing your request.".into(),
            },
        }
    })
}
