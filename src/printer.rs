//! The output module, the only writer of stdout and of the tool's own stderr lines: tables
//! (comfy-table), JSON and CSV on stdout; notes, warnings, errors and progress bars on stderr.

use std::io::{self, IsTerminal, Write};

use comfy_table::{presets, ContentArrangement};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use owo_colors::{OwoColorize, Stream};
use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::Value;

use crate::report::Reporter;
pub use crate::table::Table;

/// The format of everything written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable tables.
    Table,
    /// JSON: lists are arrays of objects with typed values.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            other => Err(format!("unknown output format {other:?}")),
        }
    }
}

/// Serializes a table as an array of objects whose keys keep column order.
struct JsonRows<'a>(&'a Table);
struct JsonRow<'a>(&'a [String], &'a [Value]);

impl serde::Serialize for JsonRows<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.rows.len()))?;
        for row in &self.0.rows {
            seq.serialize_element(&JsonRow(&self.0.columns, row))?;
        }
        seq.end()
    }
}

impl serde::Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter().zip(self.1) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Longest cell text shown in table format; JSON and CSV always carry the full value.
const MAX_CELL_CHARS: usize = 120;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: OutputFormat,
    pub quiet: bool,
}

impl Printer {
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        Self { format, quiet }
    }

    /// Writes rows in the chosen format.
    pub fn table(&self, table: &Table) -> io::Result<()> {
        let mut out = io::stdout().lock();
        match self.format {
            OutputFormat::Table => {
                writeln!(out, "{}", render_table(table))?;
            }
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut out, &JsonRows(table))?;
                writeln!(out)?;
            }
            OutputFormat::Csv => write_csv(&mut out, table)?,
        }
        out.flush()
    }

    /// Writes a titled table: in table format the title is a heading line.
    pub fn titled_table(&self, title: &str, table: &Table) -> io::Result<()> {
        if self.format == OutputFormat::Table {
            let mut out = io::stdout().lock();
            writeln!(
                out,
                "{}",
                title.if_supports_color(Stream::Stdout, |t| t.bold())
            )?;
        }
        self.table(table)
    }

    /// Writes a JSON document (used for `--format json` of non-tabular reports).
    pub fn json(&self, value: &Value) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        out.flush()
    }

    /// Writes a one-record summary: `key: value` lines, a JSON object, or a one-row CSV.
    pub fn summary(&self, fields: &[(&str, Value)]) -> io::Result<()> {
        match self.format {
            OutputFormat::Json => self.json(&Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect(),
            )),
            OutputFormat::Csv => {
                let mut t = Table::new(fields.iter().map(|(k, _)| *k));
                t.push(fields.iter().map(|(_, v)| v.clone()).collect());
                self.table(&t)
            }
            OutputFormat::Table => {
                let mut out = io::stdout().lock();
                let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                for (k, v) in fields {
                    writeln!(out, "{k:<width$}  {}", cell_text(v, usize::MAX))?;
                }
                out.flush()
            }
        }
    }

    /// Bytes on stdout as they are (generated scripts and pages), whatever the format.
    pub fn raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// A plain line of text on stdout, only in table format (machine formats stay parseable).
    pub fn line(&self, text: &str) -> io::Result<()> {
        if self.format == OutputFormat::Table {
            let mut out = io::stdout().lock();
            writeln!(out, "{}", visible(text))?;
        }
        Ok(())
    }

    /// Progress and informational messages on stderr.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            stderr_line(format_args!("{}", visible(text)));
        }
    }

    /// A warning on stderr, yellow on a terminal.
    pub fn warn(&self, text: &str) {
        stderr_line(format_args!(
            "{} {}",
            "warning:".if_supports_color(Stream::Stderr, |t| t.yellow()),
            visible(text)
        ));
    }

    /// `error: …` and its `Caused by:` chain on stderr.
    pub fn error(&self, err: &anyhow::Error) {
        let mut chain = err.chain();
        if let Some(top) = chain.next() {
            stderr_line(format_args!("error: {}", visible(&top.to_string())));
        }
        let causes: Vec<String> = chain.map(|c| visible(&c.to_string())).collect();
        if !causes.is_empty() {
            stderr_line(format_args!(""));
            stderr_line(format_args!("Caused by:"));
            for (i, c) in causes.iter().enumerate() {
                stderr_line(format_args!("  {i}: {c}"));
            }
        }
    }

    /// A progress bar on stderr, shown only on a terminal (plain runs and CI logs stay clean).
    pub fn bar(&self, len: u64, message: &str) -> ProgressBar {
        if self.quiet || !io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(message.to_string());
        pb
    }
}

impl Reporter for Printer {
    fn note(&self, text: &str) {
        Printer::note(self, text);
    }
    fn warn(&self, text: &str) {
        Printer::warn(self, text);
    }
    fn progress(&self, len: u64, label: &str) -> ProgressBar {
        self.bar(len, label)
    }
}

pub fn render_table(table: &Table) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    if io::stdout().is_terminal() {
        t.set_content_arrangement(ContentArrangement::Dynamic);
    }
    t.set_header(table.columns.iter());
    for row in &table.rows {
        t.add_row(row.iter().map(|v| cell_text(v, MAX_CELL_CHARS)));
    }
    t.to_string()
}

/// One line on stderr. A closed stderr (`2>&1 | head`) is not worth a panic: the line is dropped.
fn stderr_line(args: std::fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.write_all(b"\n");
}

/// Text for a terminal: control characters (escape sequences that could clear the screen or
/// rewrite the line) and bidirectional overrides are shown escaped (`\u{1b}`); newlines and
/// tabs stay. JSON and CSV output never goes through here: it stays exact.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\n' && c != '\t') || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Text of one value for table cells: strings unquoted, NULL empty, one line, control
/// characters escaped, long text cut with `…`.
pub fn cell_text(v: &Value, max: usize) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => visible(&s.replace(['\r', '\n', '\t'], " ")),
        other => visible(&other.to_string()),
    };
    if s.chars().count() > max {
        let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

fn write_csv(out: &mut impl Write, table: &Table) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(&table.columns).map_err(csv_io)?;
    for row in &table.rows {
        w.write_record(row.iter().map(|v| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
        .map_err(csv_io)?;
    }
    w.flush()
}

fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_rows_keep_column_order_and_types() {
        let mut t = Table::new(["z", "a"]);
        t.push(vec![json!(1), json!("x")]);
        t.push(vec![Value::Null, json!(2.5)]);
        let s = serde_json::to_string(&JsonRows(&t)).unwrap();
        assert_eq!(s, r#"[{"z":1,"a":"x"},{"z":null,"a":2.5}]"#);
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let mut t = Table::new(["title"]);
        t.push(vec![json!("a, \"b\"\nc")]);
        let mut buf = Vec::new();
        write_csv(&mut buf, &t).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "title\n\"a, \"\"b\"\"\nc\"\n"
        );
    }

    #[test]
    fn terminal_control_characters_are_shown_escaped_in_tables_only() {
        let hostile = json!("a\u{1b}[2Jb\u{7}c\u{202e}d");
        assert_eq!(cell_text(&hostile, 100), "a\\u{1b}[2Jb\\u{7}c\\u{202e}d");
        assert_eq!(visible("line\nnext\tcol"), "line\nnext\tcol");
        let mut t = Table::new(["title"]);
        t.push(vec![hostile.clone()]);
        assert!(!render_table(&t).contains('\u{1b}'));
        let mut buf = Vec::new();
        write_csv(&mut buf, &t).unwrap();
        assert!(String::from_utf8(buf).unwrap().contains('\u{1b}'));
        let json = serde_json::to_string(&JsonRows(&t)).unwrap();
        assert_eq!(json, "[{\"title\":\"a\\u001b[2Jb\\u0007c\u{202e}d\"}]");
    }

    #[test]
    fn long_cells_are_cut_in_tables_only() {
        let v = json!("x".repeat(300));
        assert_eq!(cell_text(&v, 10).chars().count(), 10);
        assert!(cell_text(&v, 10).ends_with('…'));
    }
}
