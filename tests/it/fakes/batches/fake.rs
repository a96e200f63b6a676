//! [`FakeBatches`]: the batch fake served on its own port, and what a test asks of it — the
//! script and pace of batches, scripted faults, throttled transfers, chaos, and what was seen.

use std::net::SocketAddr;

use serde_json::Value;

use super::lifecycle::batch_object;
use super::{
    chaos, count, finish_all, lock, new_state, reject_batches, router, throttle, Advance, End,
    Fault, LineScript, Recorded, Shared, ANTHROPIC_KEY, OPENAI_KEY,
};

pub struct FakeBatches {
    /// Base URL without `/v1` (Anthropic's convention; OpenAI's is this + `/v1`).
    pub url: String,
    pub state: Shared,
    /// The running server; dropping it stops the server.
    _served: super::super::serve::Served,
}

impl FakeBatches {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Self::start_on(listener)
    }

    /// A fake whose connections have a fixed, small receive buffer (no autotuning), so that a
    /// slowly reading server slows the client's upload down instead of the kernel absorbing
    /// megabytes of it (see `throttle`).
    pub fn start_with_receive_buffer(bytes: usize) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        throttle::set_receive_buffer(&listener, bytes);
        Self::start_on(listener)
    }

    fn start_on(listener: std::net::TcpListener) -> Self {
        let state = new_state();
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        lock(&state).base_url = format!("http://{addr}");
        let app = router(state.clone());
        let served = super::super::serve::spawn(listener, 2, true, move || app);
        Self {
            url: format!("http://{addr}"),
            state,
            _served: served,
        }
    }

    pub fn openai_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENAI_BASE_URL", format!("{}/v1", self.url)),
            ("OPENAI_API_KEY", OPENAI_KEY.to_string()),
        ]
    }

    pub fn anthropic_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ANTHROPIC_BASE_URL", self.url.clone()),
            ("ANTHROPIC_API_KEY", ANTHROPIC_KEY.to_string()),
        ]
    }

    pub fn set_script(&self, script: LineScript) {
        lock(&self.state).script = script;
    }

    pub fn set_advance(&self, a: Advance) {
        lock(&self.state).advance = a;
    }

    /// How batches that end from now on end.
    pub fn set_end(&self, end: End) {
        lock(&self.state).end = end;
    }

    /// The next `times` requests whose method matches and whose path starts with
    /// `path_prefix` get `status` with the provider's error envelope.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, times: usize) {
        lock(&self.state).faults.push(Fault {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            status,
            remaining: times,
        });
    }

    /// Every OpenAI batch created from now on fails validation with this error (e.g.
    /// `token_limit_exceeded`), as the real service reports on a later poll.
    pub fn reject_batches(&self, code: &str, message: &str) {
        reject_batches(&self.state, code, message);
    }

    /// Moves every running batch to its end now.
    pub fn finish_all(&self) {
        finish_all(&self.state);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).log.clone()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        count(&self.state, method, prefix)
    }

    /// Public objects of every batch, oldest first.
    pub fn batches(&self) -> Vec<Value> {
        let g = lock(&self.state);
        g.batches.iter().map(|b| batch_object(&g, b)).collect()
    }

    /// The request lines a batch was created with.
    pub fn input_lines(&self, batch_id: &str) -> Vec<Value> {
        lock(&self.state)
            .batches
            .iter()
            .find(|b| b.id == batch_id)
            .map(|b| b.lines.clone())
            .unwrap_or_default()
    }

    /// Uploads (request bodies of file uploads and Anthropic batch creates) are read this slowly.
    pub fn throttle_uploads(&self, t: throttle::Throttle) {
        lock(&self.state).throttle.upload = Some(t);
    }

    /// Downloads (file content, batch results) are sent this slowly.
    pub fn throttle_downloads(&self, t: throttle::Throttle) {
        lock(&self.state).throttle.download = Some(t);
    }

    /// Seeded fault mode: a share `rate` of the requests fail (429, 500, 503, or held `hold`
    /// and refused) before they have any effect.
    pub fn set_chaos(&self, seed: u64, rate: f64, hold: std::time::Duration) {
        lock(&self.state).chaos = Some(chaos::Chaos::new(seed, rate, hold));
    }

    /// Faults injected so far and requests seen by the fault mode.
    pub fn chaos_counts(&self) -> (chaos::Injected, usize) {
        lock(&self.state)
            .chaos
            .as_ref()
            .map_or((Default::default(), 0), |c| (c.injected, c.seen))
    }

    /// (direction, seconds) of every throttled transfer that ran to its end.
    pub fn throttled_transfers(&self) -> Vec<(&'static str, f64)> {
        lock(&self.state).throttle.finished.clone()
    }

    /// Throttled transfers started in a direction (`upload` / `download`), ended or not.
    pub fn throttled_started(&self, direction: &str) -> usize {
        let g = lock(&self.state);
        g.throttle
            .started
            .iter()
            .filter(|d| **d == direction)
            .count()
    }

    /// Raw bytes of an uploaded file.
    pub fn file_bytes(&self, file_id: &str) -> Option<Vec<u8>> {
        lock(&self.state)
            .files
            .get(file_id)
            .map(|f| f.bytes.clone())
    }
}

impl Drop for FakeBatches {
    /// Stalled transfers end first, so the server's graceful shutdown does not wait on them.
    fn drop(&mut self) {
        lock(&self.state)
            .throttle
            .released
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
