//! Benchmark of `import` against `sync` of the same issues: generates a JSON Lines dump of N
//! REST issue objects (as `gh api --paginate` gives them, ~2.8 KB each like the 140 MB /
//! 50,000-issue dump of issue 13), then, with the CLI binary as a child process so its peak RSS
//! is its own:
//!
//! 1. `import dump.jsonl` into a fresh data directory: wall time and peak RSS;
//! 2. `sync` of the issue files that import wrote, into a fresh database: the reference.
//!
//! Targets: import peak RSS ≤ 200 MB whatever the dump's size; import time ≤ 2× sync.
//!
//! Run: `cargo build && cargo run --example import_bench [-- ISSUES]` (default 50,000). The
//! binary is taken from the same target folder as this example, so build it first.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufWriter, Write};

use serde_json::json;
use support::{binary, timed};

/// One REST issue object of ~2.8 KB: labels, user, a body of a few paragraphs.
fn issue(n: u64) -> serde_json::Value {
    let body = format!(
        "Steps to reproduce issue {n}:\n\n1. open the app\n2. click the button\n\n{}",
        "The widget renders incorrectly after resizing the window; logs attached below. "
            .repeat(28)
    );
    json!({
        "url": format!("https://api.github.com/repos/bench/big/issues/{n}"),
        "repository_url": "https://api.github.com/repos/bench/big",
        "html_url": format!("https://github.com/bench/big/issues/{n}"),
        "id": 1_000_000 + n, "node_id": format!("I_kwDOAAAA{n:08}"), "number": n,
        "title": format!("Widget renders incorrectly after resize ({n})"),
        "user": {"login": format!("user{}", n % 97), "id": 5000 + n % 97, "type": "User"},
        "labels": [
            {"id": 1, "name": "bug", "color": "d73a4a", "description": "Something isn't working"},
            {"id": 2, "name": format!("area-{}", n % 11), "color": "ededed", "description": null}
        ],
        "state": if n.is_multiple_of(4) { "closed" } else { "open" },
        "locked": false, "comments": n % 9,
        "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-02-03T04:05:06Z",
        "closed_at": if n.is_multiple_of(4) { json!("2024-02-03T04:05:06Z") } else { json!(null) },
        "author_association": "NONE", "body": body,
    })
}

fn main() -> anyhow::Result<()> {
    let n: u64 = match std::env::args().nth(1).as_deref() {
        Some("--quick") => 5_000,
        Some(v) => v.parse()?,
        None => 50_000,
    };
    let bin = binary()?;
    let dir = tempfile::tempdir()?;
    let dump = dir.path().join("dump.jsonl");
    {
        let mut w = BufWriter::new(std::fs::File::create(&dump)?);
        for k in 1..=n {
            serde_json::to_writer(&mut w, &issue(k))?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    let mb = std::fs::metadata(&dump)?.len() as f64 / 1e6;
    println!("import benchmark: {n} REST issues, JSON Lines dump of {mb:.1} MB");

    let data = dir.path().join("data");
    let dump_arg = dump.display().to_string();
    let import = timed(&bin, &data, &[], &["import", &dump_arg])?;
    let summary: serde_json::Value = serde_json::from_str(&import.stdout)?;
    anyhow::ensure!(
        summary["written"] == json!(n),
        "import wrote {} issues, expected {n}",
        summary["written"]
    );

    // The reference: the same issue files loaded into a fresh database by `sync`.
    std::fs::remove_file(data.join("issues.duckdb"))?;
    let sync = timed(&bin, &data, &[], &["sync"])?;
    let summary: serde_json::Value = serde_json::from_str(&sync.stdout)?;
    anyhow::ensure!(
        summary["added"] == json!(n),
        "sync added {}",
        summary["added"]
    );

    for (name, t) in [("import", &import), ("sync", &sync)] {
        println!(
            "{name:<7} {:>7.2}s wall  {:>7.2}s CPU  peak RSS {:>6.1} MB",
            t.wall, t.cpu, t.rss_mb
        );
    }
    println!("(sync: the same issue files into a fresh database)");
    let ratio = import.wall / sync.wall;
    println!(
        "import / sync = {ratio:.2} wall, {:.2} CPU (target <= 2)",
        import.cpu / sync.cpu
    );
    println!(
        "BENCH {}",
        json!({"name": format!("import_{n}_time"), "tool": import.wall, "reference": sync.wall,
               "ratio": ratio, "target": "<= 2x sync of the same issues", "unit": "s"})
    );
    println!(
        "BENCH {}",
        json!({"name": format!("import_{n}_peak_rss"), "tool": import.rss_mb, "reference": 200.0,
               "ratio": import.rss_mb / 200.0, "target": "<= 200 MB for any input size", "unit": "MB"})
    );
    Ok(())
}
