//! The self-contained HTML report of `evaluate --html`: summary, per-label table and three
//! inline SVG charts (reliability diagram, precision/coverage curve, confusion heat map). No
//! scripts, no external resources: it opens from disk in any browser. The markup is also
//! well-formed XML (every element closed, text escaped) so it can be checked mechanically.

use std::fmt::Write;

use crate::quality::metrics::Metrics;

/// What the report is about, shown in its header.
#[derive(Debug, Clone)]
pub struct ReportHeader {
    pub processor: String,
    pub model: String,
    pub taxonomy: String,
    pub scope: String,
    pub created_at: String,
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

const W: f64 = 360.0;
const H: f64 = 260.0;
const PAD: f64 = 40.0;

/// Chart coordinates of (x, y) in 0–1.
fn xy(x: f64, y: f64) -> (f64, f64) {
    (
        PAD + x.clamp(0.0, 1.0) * (W - 2.0 * PAD),
        H - PAD - y.clamp(0.0, 1.0) * (H - 2.0 * PAD),
    )
}

fn axes(svg: &mut String, x_title: &str, y_title: &str) {
    let (x0, y0) = xy(0.0, 0.0);
    let (x1, y1) = xy(1.0, 1.0);
    let _ = write!(
        svg,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>"##
    );
    for k in 0..=4 {
        let v = k as f64 / 4.0;
        let (x, _) = xy(v, 0.0);
        let (_, y) = xy(0.0, v);
        let _ = write!(
            svg,
            r##"<text x="{x}" y="{}" font-size="10" text-anchor="middle">{v:.2}</text><text x="{}" y="{}" font-size="10" text-anchor="end">{v:.2}</text>"##,
            y0 + 14.0,
            x0 - 4.0,
            y + 3.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text><text x="12" y="{}" font-size="11" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"##,
        W / 2.0,
        H - 6.0,
        esc(x_title),
        H / 2.0,
        H / 2.0,
        esc(y_title)
    );
}

fn reliability_svg(m: &Metrics) -> String {
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="reliability" width="{W}" height="{H}" viewBox="0 0 {W} {H}"><title>Reliability diagram</title>"##
    );
    axes(&mut svg, "confidence", "accuracy");
    let (x0, y0) = xy(0.0, 0.0);
    let (x1, y1) = xy(1.0, 1.0);
    let _ = write!(
        svg,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4 3"/>"##
    );
    for b in &m.reliability {
        let Some(acc) = b.accuracy else { continue };
        let (bx, by) = xy(b.lower, acc);
        let (ex, _) = xy(b.upper, 0.0);
        let _ = write!(
            svg,
            r##"<rect class="bin" x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="#4a7bd0" fill-opacity="0.8"><title>{:.2}–{:.2}: {} prediction(s), accuracy {}</title></rect>"##,
            (ex - bx - 1.0).max(1.0),
            (y0 - by).max(0.0),
            b.lower,
            b.upper,
            b.count,
            pct(Some(acc))
        );
    }
    svg.push_str("</svg>");
    svg
}

fn curve_svg(m: &Metrics) -> String {
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="precision-coverage" width="{W}" height="{H}" viewBox="0 0 {W} {H}"><title>Precision and coverage per confidence threshold</title>"##
    );
    axes(&mut svg, "confidence threshold", "share");
    let line = |f: &dyn Fn(&crate::quality::metrics::ThresholdPoint) -> Option<f64>| {
        m.thresholds
            .iter()
            .filter_map(|p| f(p).map(|v| xy(p.threshold, v)))
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = write!(
        svg,
        r##"<polyline class="precision" points="{}" fill="none" stroke="#c0392b" stroke-width="2"/><polyline class="coverage" points="{}" fill="none" stroke="#27ae60" stroke-width="2"/>"##,
        line(&|p| p.precision),
        line(&|p| Some(p.coverage))
    );
    let _ = write!(
        svg,
        r##"<text x="{}" y="16" font-size="11" fill="#c0392b">precision</text><text x="{}" y="30" font-size="11" fill="#27ae60">coverage</text>"##,
        W - 110.0,
        W - 110.0
    );
    svg.push_str("</svg>");
    svg
}

fn confusion_svg(m: &Metrics) -> Option<String> {
    let c = m.confusion.as_ref()?;
    let rows = c.cells.len();
    let cols = c.labels.len();
    let cell = (420.0 / cols.max(1) as f64).clamp(14.0, 40.0);
    let left = 170.0;
    let top = 120.0;
    let width = left + cell * cols as f64 + 10.0;
    let height = top + cell * rows as f64 + 10.0;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="confusion" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>Confusion matrix (rows: human label, columns: predicted)</title>"##
    );
    for (j, name) in c.labels.iter().enumerate() {
        let x = left + cell * j as f64 + cell / 2.0;
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" font-size="10" transform="rotate(-60 {x:.1} {:.1})">{}</text>"##,
            top - 4.0,
            top - 4.0,
            esc(name)
        );
    }
    for (i, row) in c.cells.iter().enumerate() {
        let y = top + cell * i as f64;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            left - 4.0,
            y + cell / 2.0 + 3.0,
            esc(&c.labels[i])
        );
        let total: u64 = row.iter().sum();
        for (j, &v) in row.iter().enumerate() {
            // Row-normalised: the share of this human label's issues predicted as the column.
            let share = if total > 0 {
                v as f64 / total as f64
            } else {
                0.0
            };
            let shade = (255.0 - share * 200.0).round() as u8;
            let _ = write!(
                svg,
                r##"<rect class="cell" x="{:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({shade},{shade},255)" stroke="#fff"><title>{} → {}: {v}</title></rect>"##,
                left + cell * j as f64,
                esc(&c.labels[i]),
                esc(&c.labels[j])
            );
            if v > 0 && cell >= 20.0 {
                let _ = write!(
                    svg,
                    r##"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{v}</text>"##,
                    left + cell * j as f64 + cell / 2.0,
                    y + cell / 2.0 + 3.0
                );
            }
        }
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// The whole report.
pub fn render(h: &ReportHeader, m: &Metrics) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>Label quality</title>\
         <style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\
         .unsafe{color:#c0392b}.charts{display:flex;flex-wrap:wrap;gap:2em}</style></head><body>",
    );
    let _ = write!(
        s,
        "<h1>Label quality: {} with {}</h1><p>Taxonomy {} · {} · {} issue(s) with human labels · {}</p>",
        esc(&h.processor),
        esc(&h.model),
        esc(&h.taxonomy),
        esc(&h.scope),
        m.issues,
        esc(&h.created_at)
    );
    let _ = write!(
        s,
        "<table id=\"summary\"><tr><th>macro-F1</th><th>micro-F1</th><th>coverage</th><th>ECE (15 bins)</th></tr>\
         <tr><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr></table>",
        m.macro_f1,
        m.micro_f1,
        pct(Some(m.coverage)),
        num(m.ece)
    );
    s.push_str("<h2>Charts</h2><div class=\"charts\">");
    s.push_str(&reliability_svg(m));
    s.push_str(&curve_svg(m));
    if let Some(c) = confusion_svg(m) {
        s.push_str(&c);
    }
    s.push_str("</div><h2>Per label</h2><table id=\"labels\"><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th><th>predicted</th><th>threshold for precision ≥ 0.9</th><th>recall there</th><th>auto-apply</th></tr>");
    for l in &m.labels {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            esc(&l.label),
            l.precision,
            l.recall,
            l.f1,
            l.support,
            l.predicted,
            num(l.safe_threshold),
            pct(l.recall_at_safe_threshold),
            if l.safe_to_auto_apply { "" } else { " class=\"unsafe\"" },
            if l.safe_to_auto_apply { "safe" } else { "not safe to auto-apply" }
        );
    }
    s.push_str("</table><h2>Reliability</h2><table id=\"reliability-table\"><tr><th>confidence</th><th>predictions</th><th>mean confidence</th><th>accuracy</th></tr>");
    for b in &m.reliability {
        let _ = write!(
            s,
            "<tr><td>{:.2}–{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            b.lower,
            b.upper,
            b.count,
            num(b.mean_confidence),
            pct(b.accuracy)
        );
    }
    s.push_str("</table></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::metrics::{compute, Sample};

    /// A minimal XML well-formedness check: every tag closed in order, no stray `<` or `&`.
    fn well_formed(doc: &str) -> Result<(), String> {
        let body = doc.strip_prefix("<!DOCTYPE html>\n").ok_or("no doctype")?;
        let mut stack: Vec<String> = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find(['<', '&']) {
            let after = &rest[i..];
            if after.starts_with('&') {
                let end = after.find(';').ok_or("unterminated entity")?;
                let name = &after[1..end];
                let ok = ["amp", "lt", "gt", "quot", "#39"].contains(&name);
                if !ok {
                    return Err(format!("bad entity {name}"));
                }
                rest = &after[end + 1..];
                continue;
            }
            let end = after.find('>').ok_or("unterminated tag")?;
            let tag = &after[1..end];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else if !tag.ends_with('/') {
                let name: String = tag.chars().take_while(|c| c.is_alphanumeric()).collect();
                if name.is_empty() {
                    return Err(format!("stray < in {:?}", &after[..end.min(30)]));
                }
                stack.push(name);
            }
            rest = &after[end + 1..];
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed {stack:?}"))
        }
    }

    fn metrics(exclusive: bool) -> Metrics {
        let l: Vec<String> = ["bug", "feature <&> \"x\""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let samples = vec![
            Sample {
                human: vec![l[0].clone()],
                predicted: vec![(l[0].clone(), 0.9)],
            },
            Sample {
                human: vec![l[1].clone()],
                predicted: vec![(l[0].clone(), 0.6)],
            },
            Sample {
                human: vec![l[1].clone()],
                predicted: vec![],
            },
        ];
        compute(&l, exclusive, &samples)
    }

    fn header() -> ReportHeader {
        ReportHeader {
            processor: "product-labeling".into(),
            model: "local".into(),
            taxonomy: "t <v1>".into(),
            scope: "o/r".into(),
            created_at: "2026-01-01".into(),
        }
    }

    #[test]
    fn the_report_is_well_formed_self_contained_and_has_its_charts() {
        let doc = render(&header(), &metrics(true));
        well_formed(&doc).unwrap();
        for id in [
            "id=\"reliability\"",
            "id=\"precision-coverage\"",
            "id=\"confusion\"",
        ] {
            assert!(doc.contains(id), "missing chart {id}");
        }
        assert!(doc.contains("class=\"bin\""), "reliability bars");
        assert!(doc.contains("class=\"precision\" points=\""));
        assert_eq!(doc.matches("class=\"cell\"").count(), 2 * 3);
        assert!(doc.contains("feature &lt;&amp;&gt; &quot;x&quot;"));
        assert!(doc.contains("not safe to auto-apply"));
        for banned in ["<script", "http://", "https://", "src=", "href="] {
            let hits: Vec<_> = doc.match_indices(banned).collect();
            // The SVG namespace is an identifier, not a fetch.
            let real = hits
                .iter()
                .filter(|(i, _)| !doc[*i..].starts_with("http://www.w3.org/2000/svg"))
                .count();
            assert_eq!(real, 0, "{banned} in the report");
        }
    }

    #[test]
    fn multi_label_reports_have_no_confusion_matrix_and_the_checker_catches_breakage() {
        let doc = render(&header(), &metrics(false));
        well_formed(&doc).unwrap();
        assert!(!doc.contains("id=\"confusion\""));
        assert!(well_formed(&doc.replacen("</svg>", "", 1)).is_err());
        assert!(well_formed(&doc.replacen("&amp;", "&", 1)).is_err());
    }
}
