//! Tests of the `local` model on synthetic issues: separable topics are learnt perfectly,
//! shuffled labels stay near chance, files round-trip and damaged files are refused.

use super::*;
use crate::learn::classifier::Rng;

const TOPICS: [&[&str]; 3] = [
    &["socket", "http", "dns", "proxy", "tcp", "handshake", "tls"],
    &[
        "file",
        "path",
        "directory",
        "stream",
        "disk",
        "filesystem",
        "symlink",
    ],
    &[
        "json",
        "serializer",
        "xml",
        "schema",
        "contract",
        "encoding",
        "deserialize",
    ],
];
const NOISE: &[&str] = &[
    "the", "when", "fails", "after", "update", "please", "error", "works", "issue", "version",
    "windows", "linux", "test", "repro", "expected", "actual", "thanks", "null",
];

/// `n` issues: topic words of the issue's class among shared noise words.
fn synthetic(n: usize, seed: u64) -> Vec<(String, String, usize)> {
    let mut rng = Rng::new(seed);
    let mut pick =
        |words: &[&str]| words[(rng.next_u64() % words.len() as u64) as usize].to_string();
    (0..n)
        .map(|i| {
            let c = i % 3;
            let title = format!("{} {} {}", pick(NOISE), pick(TOPICS[c]), pick(NOISE));
            let mut body = Vec::new();
            for j in 0..12 {
                body.push(if j % 4 == 0 {
                    pick(TOPICS[c])
                } else {
                    pick(NOISE)
                });
            }
            (title, body.join(" "), c)
        })
        .collect()
}

fn info(exclusive: bool) -> ModelInfo {
    ModelInfo {
        processor: "product-labeling".into(),
        taxonomy_name: "t".into(),
        taxonomy_version: "1".into(),
        taxonomy_sha256: "ab".repeat(32),
        labels: vec!["net".into(), "io".into(), "serialization".into()],
        exclusive,
        created_at: "2026-01-01T00:00:00Z".into(),
        training_query: "q".into(),
        training_ids: vec![],
        metrics: serde_json::Value::Null,
    }
}

fn docs(rows: &[(String, String, usize)]) -> Vec<TrainingDoc<'_>> {
    rows.iter()
        .enumerate()
        .map(|(i, (t, b, c))| TrainingDoc {
            id: format!("o/r#{i}"),
            text: Text {
                title: t,
                body: b,
                comments: &[],
            },
            labels: vec![*c],
        })
        .collect()
}

fn macro_f1(model: &LocalModel, rows: &[(String, String, usize)]) -> f64 {
    let samples: Vec<Sample> = rows
        .iter()
        .map(|(t, b, c)| {
            let p = model.probabilities(&Text {
                title: t,
                body: b,
                comments: &[],
            });
            Sample {
                human: vec![model.info.labels[*c].clone()],
                predicted: model.recommend(&p),
            }
        })
        .collect();
    metrics::compute(&model.info.labels, model.info.exclusive, &samples).macro_f1
}

#[test]
fn a_separable_set_is_learnt_perfectly_in_both_modes() {
    let train = synthetic(300, 1);
    let test = synthetic(150, 2);
    for exclusive in [true, false] {
        let m = LocalModel::train(info(exclusive), &docs(&train), &TrainConfig::default()).unwrap();
        assert_eq!(macro_f1(&m, &test), 1.0, "exclusive {exclusive}");
        assert_eq!(m.info.training_ids.len(), 300);
        assert!(m.info.metrics["macro_f1"].as_f64().unwrap() > 0.99);
    }
}

#[test]
fn shuffled_labels_stay_near_chance() {
    let mut train = synthetic(600, 3);
    let mut rng = Rng::new(9);
    for row in train.iter_mut() {
        row.2 = (rng.next_u64() % 3) as usize;
    }
    let test = synthetic(300, 4);
    let m = LocalModel::train(info(true), &docs(&train), &TrainConfig::default()).unwrap();
    let f1 = macro_f1(&m, &test);
    assert!(f1 < 0.5, "macro-F1 {f1} on labels that carry no signal");
    // Calibrated: no label gets a confident probability from noise.
    let p = m.probabilities(&Text {
        title: &test[0].0,
        body: &test[0].1,
        comments: &[],
    });
    assert!(p.iter().all(|v| *v < 0.7), "{p:?}");
}

#[test]
fn predictions_name_the_terms_that_drove_them() {
    let train = synthetic(300, 5);
    let m = LocalModel::train(info(true), &docs(&train), &TrainConfig::default()).unwrap();
    let scores = m.predict(&Text {
        title: "proxy handshake fails",
        body: "the tls handshake fails after update",
        comments: &[],
    });
    let net = &scores[0];
    assert!(net.probability > 0.8, "{scores:?}");
    assert!(
        net.terms
            .iter()
            .any(|t| t == "handshake" || t == "tls" || t == "proxy"),
        "{:?}",
        net.terms
    );
    assert!(!net.terms.iter().any(|t| t == "the"));
}

#[test]
fn files_round_trip_and_damage_is_refused() {
    let train = synthetic(120, 6);
    let m = LocalModel::train(info(false), &docs(&train), &TrainConfig::default()).unwrap();
    let bytes = m.to_bytes().unwrap();
    let back = LocalModel::from_bytes(&bytes).unwrap();
    let text = Text {
        title: "json schema",
        body: "serializer",
        comments: &[],
    };
    assert_eq!(m.probabilities(&text), back.probabilities(&text));
    assert_eq!(back.info, m.info);
    for broken in [
        &bytes[..bytes.len() - 3],
        &bytes[..20],
        b"GAQLM1\n".as_slice(),
        b"hello".as_slice(),
    ] {
        let err = LocalModel::from_bytes(broken).unwrap_err();
        assert!(err.to_string().contains("not a valid local model"), "{err}");
    }
}

#[test]
fn too_few_issues_is_a_clear_error() {
    let train = synthetic(5, 7);
    let err = LocalModel::train(info(true), &docs(&train), &TrainConfig::default()).unwrap_err();
    assert!(err.to_string().contains("too few"), "{err}");
}
