//! What the benchmark examples share: the CLI binary of the same build, a timed child run
//! (wall time and CPU time from the child's own `wait4` usage, peak RSS from its
//! `/proc/PID/status`), this process's CPU time, and the `BENCH {json}` line examples/bench.rs
//! collects into one table.
//! Included with `#[path = "support/mod.rs"] mod support;` (a folder without main.rs is not an
//! example of its own).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The CLI binary beside this example's folder (target/{profile}/github-analysis).
pub fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no target folder above {}", exe.display()))?;
    let bin = dir.join("github-analysis");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it first with the same profile (`cargo build --release`)",
        bin.display()
    );
    Ok(bin)
}

/// What one CLI run took.
pub struct Took {
    pub stdout: String,
    pub wall: f64,
    /// User + system CPU seconds: steadier than wall time on a shared machine.
    pub cpu: f64,
    /// The child's own peak: its image's high-water mark (`VmHWM`), sampled every few ms.
    /// Not `wait4`'s `ru_maxrss`: Linux carries the spawning process's peak over the `exec`
    /// into it, so a benchmark holding a large fake server measured its own memory.
    pub rss_mb: f64,
}

/// Runs the CLI with `--format json -q` in data directory `data`, with extra environment
/// variables (keys are never inherited); fails unless it exits 0.
pub fn timed(
    bin: &Path,
    data: &Path,
    env: &[(&str, String)],
    args: &[&str],
) -> anyhow::Result<Took> {
    let start = Instant::now();
    let mut c = Command::new(bin);
    c.args(args)
        .args(["--format", "json", "-q"])
        .env("GITHUB_ANALYSIS_DATA_DIR", data)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn()?;
    let peak = PeakRss::watch(child.id());
    // Both pipes read to the end before waiting, stderr on its own thread so neither fills.
    let mut errs = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut e = String::new();
        if let Some(s) = errs.as_mut() {
            let _ = s.read_to_string(&mut e);
        }
        e
    });
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out)?;
    }
    let err = err_reader.join().unwrap_or_default();
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid for writes for the duration of the call.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    let rss_kb = peak.stop();
    anyhow::ensure!(
        waited == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{args:?} failed: {err}"
    );
    Ok(Took {
        stdout: out,
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        rss_mb: rss_kb as f64 / 1024.0,
    })
}

/// Samples a child's `VmHWM` (the high-water mark of its resident memory, kB) until stopped.
/// The mark only grows, so the last reading before the child exits is its peak but for growth
/// in its last few milliseconds.
struct PeakRss {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    fn watch(pid: u32) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let sampler = std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let mut peak = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                // A zombie (exited, not yet reaped) has no VmHWM line: the last reading stays.
                if let Some(kb) = std::fs::read_to_string(&path).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                }) {
                    peak = peak.max(kb);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak
        });
        Self { stop, sampler }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sampler.join().unwrap_or(0)
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// CPU seconds (user + system) this process has used: on a machine shared with other jobs,
/// wall time measures the neighbours too.
pub fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage writes into it and reads nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is valid for writes for the duration of the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    seconds(u.ru_utime) + seconds(u.ru_stime)
}

/// Prints one `BENCH {json}` line: the tool's figure next to its reference, and their ratio.
pub fn bench_line(
    name: &str,
    tool: f64,
    reference: f64,
    reference_name: &str,
    target: &str,
    unit: &str,
) {
    let ratio = if reference == 0.0 {
        0.0
    } else {
        tool / reference
    };
    println!(
        "BENCH {}",
        serde_json::json!({"name": name, "tool": tool, "reference": reference,
            "reference_name": reference_name, "ratio": ratio, "target": target, "unit": unit})
    );
}
