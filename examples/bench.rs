//! Every benchmark of the project in one run, each next to its reference, as one table.
//!
//! Run: `cargo run --release --example bench [-- --quick] [-- --only NAME]`
//!
//! It builds the CLI and the benchmark examples (release, like itself), runs each as a subprocess with the
//! sizes the docs quote (`--quick`: smaller sizes for a smoke run), collects the
//! `BENCH {json}` lines they print — `name`, `tool`, `reference`, `ratio`, `target`, `unit` —
//! and prints them as one table. docs/benchmarks.md takes its figures from this table. A
//! benchmark that fails is reported in the table and makes the run exit 1; the others still run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// (example, arguments for the documented run, arguments for `--quick`).
const BENCHMARKS: &[(&str, &[&str], &[&str])] = &[
    ("label_quality", &[], &["--quick"]),
    ("evaluate_bench", &[], &["--quick"]),
    ("batch_bench", &[], &["--quick"]),
    ("selection_bench", &[], &["--quick"]),
    ("import_bench", &[], &["--quick"]),
    ("sync_bench", &["50000", "5"], &["2000", "2"]),
    ("collect_bench", &[], &["--quick"]),
    ("process_bench", &[], &["--quick"]),
    ("update_labels_bench", &[], &["--quick"]),
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let release = !cfg!(debug_assertions);
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "--bins", "--examples"]);
    if release {
        build.arg("--release");
    }
    anyhow::ensure!(build.status()?.success(), "building the examples failed");
    let dir: PathBuf = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("no examples folder"))?;

    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut failed = Vec::new();
    for (name, full, small) in BENCHMARKS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let exe = dir.join(name);
        if !exe.is_file() {
            failed.push(format!("{name}: not built"));
            continue;
        }
        eprintln!("== {name}");
        let started = Instant::now();
        let out = Command::new(&exe)
            .args(if quick { *small } else { *full })
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut found = 0;
        for line in text.lines() {
            if let Some(json) = line.strip_prefix("BENCH ") {
                match serde_json::from_str::<serde_json::Value>(json) {
                    Ok(mut v) => {
                        v["benchmark"] = serde_json::json!(name);
                        // As it comes, so a long run that is stopped still leaves its figures.
                        eprintln!("   {}", row(&v));
                        rows.push(v);
                        found += 1;
                    }
                    Err(e) => failed.push(format!("{name}: unreadable BENCH line ({e})")),
                }
            }
        }
        if !out.status.success() || found == 0 {
            failed.push(format!(
                "{name}: exit {:?}, {found} result(s); stderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ));
        }
        eprintln!("   {:.0}s", started.elapsed().as_secs_f64());
    }

    println!(
        "\n{} build{}; machine: {} cores",
        if release { "release" } else { "DEBUG" },
        if quick { ", --quick sizes" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| benchmark | work | tool | reference | ratio | target |\n|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", row(r));
    }
    for f in &failed {
        println!("FAILED: {f}");
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// One table row of a `BENCH` result.
fn row(r: &serde_json::Value) -> String {
    let num = |v: &serde_json::Value| match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
        None => v.as_str().unwrap_or("—").to_string(),
    };
    let unit = r["unit"].as_str().unwrap_or("");
    let reference = match r["reference_name"].as_str() {
        Some(n) => format!("{} {unit} ({n})", num(&r["reference"])),
        None => format!("{} {unit}", num(&r["reference"])),
    };
    format!(
        "| {} | {} | {} {unit} | {} | {} | {} |",
        r["benchmark"].as_str().unwrap_or(""),
        r["name"].as_str().unwrap_or(""),
        num(&r["tool"]),
        reference,
        num(&r["ratio"]),
        r["target"].as_str().unwrap_or("—"),
    )
}
