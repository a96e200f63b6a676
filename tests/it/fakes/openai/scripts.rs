//! Scripts of the fake Chat Completions endpoint beyond one fixed reply: answering normally
//! for the first N requests and then failing (credit running out), and a seeded fault mode
//! (429, 500, 503, hangs, invalid answers) whose draw a test can replay.

use std::sync::Arc;
use std::time::Duration;

use super::{default_answer, Call, Reply, Script};

/// A script that answers the first `n` requests normally and every later one with `then`
/// (e.g. the quota running out in the middle of a run).
pub fn after(n: usize, then: Reply) -> Script {
    let seen = std::sync::atomic::AtomicUsize::new(0);
    Arc::new(move |c: &Call| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
            Reply::Answer(default_answer(c))
        } else {
            then.clone()
        }
    })
}

/// What a script sees of a request.
/// The faults a seeded fault script injects, in the order its draw picks them.
pub const FAULTS: [&str; 5] = ["429", "500", "503", "timeout", "invalid"];

/// Which fault (index into [`FAULTS`]), if any, hits `attempt` of `issue` under `seed` with
/// probability `rate`: a pure function, so a test can replay the draw.
pub fn fault_of(seed: u64, rate: f64, issue: &str, attempt: usize) -> Option<usize> {
    // splitmix64 over the seed, the issue's bytes and the attempt number.
    let mut x = seed ^ (attempt as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in issue.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let hit = (next() >> 11) as f64 / (1u64 << 53) as f64;
    (hit < rate).then(|| (next() % FAULTS.len() as u64) as usize)
}

/// A seeded fault script: each request (per issue and attempt, repairs included) meets one of
/// [`FAULTS`] with probability `rate` — 429 with a short retry-after, 500, 503, an answer held
/// `hang` (longer than the client's timeout), or an answer that is not JSON — else a valid
/// answer.
pub fn faults(seed: u64, rate: f64, hang: Duration) -> Script {
    Arc::new(move |c: &Call| {
        let issue = c.issue.clone().unwrap_or_default();
        match fault_of(seed, rate, &issue, c.attempt) {
            Some(0) => Reply::RateLimited { retry_after_ms: 20 },
            Some(1) => Reply::ServerError,
            Some(2) => Reply::Overloaded {
                retry_after_ms: Some(20),
            },
            Some(3) => Reply::Hang(hang),
            Some(_) => Reply::Content("{\"recommended_labels\": [".into()),
            None => Reply::Answer(default_answer(c)),
        }
    })
}
