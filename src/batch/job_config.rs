//! What a job keeps of its configuration: the AI settings and the content of the files they
//! name (taxonomy, price table). A job is refreshed, collected, cancelled and retried with
//! exactly what it was submitted with, even after those files moved or changed: the kept
//! content is written next to the job's inputs (`batch/input/{job}-taxonomy.toml`) and used
//! instead of the original path.

use serde_json::{json, Value};

use crate::error::user;
use crate::plan::AiConfig;
use crate::store::{Store, BATCH_INPUT_DIR};

/// The files a configuration names, as (metadata key, file suffix).
const KEPT: [(&str, &str); 2] = [("taxonomy_toml", "taxonomy"), ("prices_toml", "prices")];

/// The job metadata of a configuration: the settings and the named files' content.
pub(crate) fn keep(config: &AiConfig) -> anyhow::Result<Value> {
    let mut m = json!({ "config": config });
    for ((key, _), path) in KEPT.iter().zip([&config.taxonomy, &config.prices]) {
        if let Some(p) = path {
            let text = std::fs::read_to_string(p)
                .map_err(|e| user(format!("cannot read {}: {e}", p.display())))?;
            m[*key] = Value::String(text);
        }
    }
    Ok(m)
}

/// A job's configuration, its kept files restored under the data directory.
pub(crate) fn restore(store: &Store, job_id: &str, metadata: &Value) -> anyhow::Result<AiConfig> {
    let mut config: AiConfig =
        serde_json::from_value(metadata["config"].clone()).unwrap_or_default();
    for (key, suffix) in KEPT {
        let Some(text) = metadata[key].as_str() else {
            continue;
        };
        let abs = store.abs(&format!("{BATCH_INPUT_DIR}/{job_id}-{suffix}.toml"));
        if std::fs::read_to_string(&abs).ok().as_deref() != Some(text) {
            if let Some(dir) = abs.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = abs.with_extension("toml.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &abs)?;
        }
        match key {
            "taxonomy_toml" => config.taxonomy = Some(abs),
            _ => config.prices = Some(abs),
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_files_outlive_the_originals() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("areas.toml");
        std::fs::write(&original, "name = \"areas\"\n").unwrap();
        let config = AiConfig {
            taxonomy: Some(original.clone()),
            ..Default::default()
        };
        let m = keep(&config).unwrap();
        std::fs::remove_file(&original).unwrap();
        let store = Store::new(dir.path().join("data"));
        let back = restore(&store, "abc", &m).unwrap();
        let path = back.taxonomy.unwrap();
        assert_ne!(path, original);
        assert_eq!(std::fs::read_to_string(path).unwrap(), "name = \"areas\"\n");
        assert!(back.prices.is_none());
        let missing = AiConfig {
            prices: Some(original),
            ..Default::default()
        };
        assert!(keep(&missing).is_err());
    }
}
