//! Benchmark of `evaluate` over 100,000 stored results (issue 10's target: ≤ 5 s), built the
//! way a user gets there, with the CLI binary of the same build as a child process:
//!
//! 1. `import` a JSON Lines dump of 2,000 older + N newer issues, each with one of 8 area labels
//!    (its text leans towards its area, with shared noise, so the model is neither perfect nor
//!    random);
//! 2. `taxonomy init --prefix area-` (exclusive: no issue has two);
//! 3. `train product-labeling` on the older issues (`--until`);
//! 4. `process-query custom … --batch-mode --wait --model local`: N results stored offline;
//! 5. `evaluate product-labeling`: timed; its JSON must count N scored issues.
//!
//! Run: `cargo build --release && cargo run --release --example evaluate_bench [-- N]`
//! (default 100,000; `--quick`: 5,000).

#[path = "support/mod.rs"]
mod support;

use std::io::{BufWriter, Write};

use serde_json::json;
use support::{bench_line, binary, timed};

/// Each area's topical words, space-separated.
const AREAS: [(&str, &str); 8] = [
    ("net", "socket http timeout dns proxy tls"),
    ("io", "file stream path directory pipe buffer"),
    ("json", "serializer json utf8 reader writer token"),
    ("collections", "list dictionary hashset queue array span"),
    ("threading", "thread lock task async deadlock mutex"),
    ("crypto", "rsa certificate hash sha256 aes key"),
    ("runtime", "gc jit exception stack interop assembly"),
    ("tests", "xunit flaky ci assert fixture coverage"),
];
/// Words of any issue, whatever its area.
const NOISE: &str = concat!(
    "the fails when after update on linux windows version repro expected actual error works ",
    "sometimes null"
);
const TRAINING: u64 = 2_000;

/// A small deterministic generator (SplitMix64), so every run labels the same issues.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// One of the space-separated `words`.
    fn pick<'a>(&mut self, words: &'a str) -> &'a str {
        let n = words.split(' ').count() as u64;
        words
            .split(' ')
            .nth((self.next() % n) as usize)
            .unwrap_or(words)
    }
}

/// Issue `n`: area `n % 8`; a third of its topical words come from another area.
fn issue(n: u64, rng: &mut Rng) -> serde_json::Value {
    let area = (n % AREAS.len() as u64) as usize;
    let mut words = Vec::new();
    for _ in 0..40 {
        let a = if rng.next().is_multiple_of(3) {
            (rng.next() % AREAS.len() as u64) as usize
        } else {
            area
        };
        words.push(rng.pick(AREAS[a].1));
        words.push(rng.pick(NOISE));
    }
    let title = format!("{} {} {}", words[0], words[1], words[2]);
    // The older issues (training) in 2023, the newer ones in 2024, a minute apart.
    let (year, k) = if n <= TRAINING {
        (2023, n)
    } else {
        (2024, n - TRAINING)
    };
    let created = format!(
        "{year}-{:02}-{:02}T{:02}:{:02}:00Z",
        1 + (k / 40_000) % 12,
        1 + (k / 1_440) % 27,
        (k / 60) % 24,
        k % 60
    );
    json!({
        "url": format!("https://api.github.com/repos/bench/big/issues/{n}"),
        "repository_url": "https://api.github.com/repos/bench/big",
        "html_url": format!("https://github.com/bench/big/issues/{n}"),
        "id": 1_000_000 + n, "node_id": format!("I_kwDOAAAA{n:08}"), "number": n,
        "title": title,
        "user": {"login": format!("user{}", n % 97), "id": 5000 + n % 97, "type": "User"},
        "labels": [{"id": 10 + area, "name": format!("area-{}", AREAS[area].0), "color": "ededed",
                    "description": format!("Issues about {}", AREAS[area].0)}],
        "state": "open", "locked": false, "comments": 0,
        "created_at": created, "updated_at": created, "closed_at": null,
        "author_association": "NONE", "body": words.join(" "),
    })
}

fn main() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1);
    let n: u64 = match arg.as_deref() {
        Some("--quick") => 5_000,
        Some(v) => v.parse()?,
        None => 100_000,
    };
    let bin = binary()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let dump = dir.path().join("dump.jsonl");
    {
        let mut rng = Rng(7);
        let mut w = BufWriter::new(std::fs::File::create(&dump)?);
        for k in 1..=TRAINING + n {
            serde_json::to_writer(&mut w, &issue(k, &mut rng))?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    let s = |p: &std::path::Path| p.display().to_string();
    let taxonomy = dir.path().join("areas.toml");
    let step = |args: &[&str]| -> anyhow::Result<support::Took> {
        let t = timed(&bin, &data, &[], args)?;
        println!("{:>8.2}s  {}", t.wall, args.join(" "));
        Ok(t)
    };
    step(&["import", &s(&dump)])?;
    step(&[
        "taxonomy",
        "init",
        "--org",
        "bench",
        "--repo",
        "big",
        "--prefix",
        "area-",
        "-o",
        &s(&taxonomy),
    ])?;
    let tax = s(&taxonomy);
    step(&[
        "train",
        "product-labeling",
        "--taxonomy",
        &tax,
        "--org",
        "bench",
        "--repo",
        "big",
        "--until",
        "2024-01-01",
    ])?;
    let sql = "SELECT id FROM issues WHERE created_at >= TIMESTAMP '2024-01-01'";
    let label = step(&[
        "process-query",
        "custom",
        "product-labeling",
        sql,
        "--batch-mode",
        "--yes",
        "--wait",
        "--poll-interval",
        "0.2",
        "--model",
        "local",
        "--taxonomy",
        &tax,
    ])?;
    let evaluate = step(&[
        "evaluate",
        "product-labeling",
        "--org",
        "bench",
        "--repo",
        "big",
        "--taxonomy",
        &tax,
    ])?;
    let doc: serde_json::Value = serde_json::from_str(&evaluate.stdout)?;
    let scored = doc["metrics"]["issues"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        scored == n,
        "evaluate scored {scored} issues, expected {n}: {}",
        evaluate.stdout
    );
    println!(
        "evaluate over {n} results: {:.2}s wall, {:.2}s CPU, peak RSS {:.0} MB (macro-F1 {}); \
         labelling them offline in a local batch job took {:.1}s",
        evaluate.wall, evaluate.cpu, evaluate.rss_mb, doc["metrics"]["macro_f1"], label.wall
    );
    bench_line(
        &format!("evaluate_{n}_results"),
        evaluate.wall,
        5.0,
        "target",
        "evaluate over 100,000 results <= 5 s",
        "s",
    );
    Ok(())
}
