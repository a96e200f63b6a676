//! Validation of a model's `product-labeling` answer, shared by real-time and batch results:
//! unambiguous slips are normalised and noted (a label's case or spacing differs from the
//! taxonomy, a label recommended twice), everything else that cannot be understood fails with a
//! reason a model can act on (it feeds the repair request). See docs/process.md, "Validation".

use serde_json::Value;

use super::{Analysis, RecommendedLabel};
use crate::processors::taxonomy::Taxonomy;

/// The key two spellings of one label share: no whitespace, lower case.
fn key(label: &str) -> String {
    label
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The taxonomy's spelling of `label`: itself when exact, the one label that differs only in
/// case or whitespace, or an error (unknown, or several labels would fit).
fn canonical<'t>(taxonomy: &'t Taxonomy, label: &str) -> Result<&'t str, String> {
    if let Some(l) = taxonomy.labels.iter().find(|l| l.name == label) {
        return Ok(&l.name);
    }
    let k = key(label);
    let fits: Vec<&str> = taxonomy
        .labels
        .iter()
        .filter(|l| key(&l.name) == k)
        .map(|l| l.name.as_str())
        .collect();
    match fits.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "recommended label {label:?} is not in the taxonomy; allowed labels: {}",
            taxonomy.names().join(", ")
        )),
        many => Err(format!(
            "recommended label {label:?} is ambiguous: it could be any of {}",
            many.join(", ")
        )),
    }
}

pub(super) fn check_confidence(what: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "{what} is {v}, it must be a number between 0 and 1"
        ))
    }
}

/// Checks an answer: shape (exact schema), labels in the taxonomy (case and whitespace slips
/// mapped to its spelling), duplicate labels merged keeping the higher confidence, confidences
/// in [0, 1]. What was normalised is listed in `normalized`.
pub fn validate(taxonomy: &Taxonomy, value: &Value) -> Result<Analysis, String> {
    // `normalized` is ours to write, never the model's.
    if value.get("normalized").is_some() {
        return Err("the answer does not match the schema: unknown field `normalized`".into());
    }
    let mut a: Analysis = serde_json::from_value(value.clone())
        .map_err(|e| format!("the answer does not match the schema: {e}"))?;
    check_confidence("confidence", a.confidence)?;
    let mut notes = Vec::new();
    let mut merged: Vec<(RecommendedLabel, usize)> = Vec::new();
    for r in std::mem::take(&mut a.recommended_labels) {
        check_confidence(&format!("confidence of {}", r.label), r.confidence)?;
        let name = canonical(taxonomy, &r.label)?;
        if name != r.label {
            notes.push(format!("label {:?} read as {name:?}", r.label));
        }
        let r = RecommendedLabel {
            label: name.to_string(),
            ..r
        };
        match merged.iter_mut().find(|(m, _)| m.label == r.label) {
            Some((kept, times)) => {
                *times += 1;
                if r.confidence > kept.confidence {
                    *kept = r;
                }
            }
            None => merged.push((r, 1)),
        }
    }
    for (r, times) in &merged {
        if *times > 1 {
            notes.push(format!(
                "label {:?} recommended {times} times: merged, keeping confidence {}",
                r.label, r.confidence
            ));
        }
    }
    a.recommended_labels = merged.into_iter().map(|(r, _)| r).collect();
    a.normalized = notes;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taxonomy() -> Taxonomy {
        Taxonomy::default_replicated().unwrap()
    }

    fn answer(labels: Value) -> Value {
        json!({
            "recommended_labels": labels,
            "current_labels_assessment": [{"label": "bug", "correct": true, "reasoning": "r"}],
            "confidence": 0.8, "summary": "s", "reasoning": "r"
        })
    }

    fn rec(label: &str, confidence: f64, reasoning: &str) -> Value {
        json!({"label": label, "confidence": confidence, "reasoning": reasoning})
    }

    #[test]
    fn exact_answers_pass_unchanged() {
        let t = taxonomy();
        let good = answer(json!([rec("product::kots", 0.9, "kotsadm")]));
        let a = validate(&t, &good).unwrap();
        assert_eq!(a.recommended_labels[0].label, "product::kots");
        assert!(a.normalized.is_empty());
        // Nothing added to the stored analysis when nothing was normalised.
        assert!(serde_json::to_value(&a)
            .unwrap()
            .get("normalized")
            .is_none());
    }

    #[test]
    fn duplicates_merge_keeping_the_higher_confidence_and_say_so() {
        let t = taxonomy();
        let v = answer(json!([
            rec("product::kots", 0.6, "low"),
            rec("product::troubleshoot", 0.7, "t"),
            rec("product::kots", 0.9, "high"),
        ]));
        let a = validate(&t, &v).unwrap();
        let labels: Vec<(&str, f64, &str)> = a
            .recommended_labels
            .iter()
            .map(|r| (r.label.as_str(), r.confidence, r.reasoning.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("product::kots", 0.9, "high"),
                ("product::troubleshoot", 0.7, "t")
            ]
        );
        assert_eq!(a.normalized.len(), 1);
        assert!(
            a.normalized[0].contains("recommended 2 times"),
            "{:?}",
            a.normalized
        );
    }

    #[test]
    fn case_and_whitespace_variants_map_to_the_taxonomy_label() {
        let t = taxonomy();
        let v = answer(json!([
            rec(" Product::KOTS ", 0.8, "a"),
            rec("product :: kots", 0.5, "b"),
        ]));
        let a = validate(&t, &v).unwrap();
        assert_eq!(a.recommended_labels.len(), 1);
        assert_eq!(a.recommended_labels[0].label, "product::kots");
        assert_eq!(a.recommended_labels[0].confidence, 0.8);
        assert_eq!(a.normalized.len(), 3, "{:?}", a.normalized);
        let stored = serde_json::to_value(&a).unwrap();
        assert_eq!(stored["normalized"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn what_cannot_be_understood_still_fails() {
        let t = taxonomy();
        let unknown = answer(json!([rec("product::nope", 0.9, "r")]));
        assert!(validate(&t, &unknown)
            .unwrap_err()
            .contains("not in the taxonomy"));
        let bad_confidence = answer(json!([rec("product::kots", 1.5, "r")]));
        assert!(validate(&t, &bad_confidence)
            .unwrap_err()
            .contains("between 0 and 1"));
        let mut ours = answer(json!([]));
        ours["normalized"] = json!([]);
        assert!(validate(&t, &ours).unwrap_err().contains("normalized"));
        let mut missing = answer(json!([]));
        missing.as_object_mut().unwrap().remove("summary");
        assert!(validate(&t, &missing).unwrap_err().contains("summary"));
        let mut extra = answer(json!([]));
        extra["extra"] = json!(1);
        assert!(validate(&t, &extra).unwrap_err().contains("extra"));
        assert!(validate(&t, &json!("text")).is_err());
    }

    #[test]
    fn two_taxonomy_labels_differing_only_in_case_are_ambiguous() {
        let toml = r#"
name = "t"
version = "1"
[[labels]]
name = "area::UI"
description = "upper"
[[labels]]
name = "area::ui"
description = "lower"
"#;
        let Ok(t) = Taxonomy::parse(toml) else {
            // A taxonomy that refuses such labels needs no ambiguity rule.
            return;
        };
        let v = answer(json!([rec("AREA::Ui", 0.5, "r")]));
        assert!(validate(&t, &v).unwrap_err().contains("ambiguous"));
        assert!(validate(&t, &answer(json!([rec("area::UI", 0.5, "r")]))).is_ok());
    }
}
