//! Choosing and loading the trained `local` model of a plan: `--model local` needs the
//! taxonomy's model file; with no model configured at all, that file (when `train` made one)
//! is preferred over `rules` (docs/quality.md).

use std::path::Path;
use std::sync::Arc;

use crate::ai::{ModelSpec, ProviderKind, ResolvedModel};
use crate::error::user;
use crate::learn::{ExampleIndex, LocalModel};
use crate::processors::local::FewShot;
use crate::processors::Processor;

/// Loads the `local` model into the processor when the plan uses it (or falls back to it).
pub fn attach(
    resolved: &mut ResolvedModel,
    processor: &mut Processor,
    models_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let wants = resolved.spec.provider == ProviderKind::Local;
    // `rules` with a notice is the no-key fallback, not a user's choice.
    let fallback = resolved.spec.provider == ProviderKind::Rules && resolved.notice.is_some();
    if !wants && !fallback {
        return Ok(());
    }
    let (taxonomy, sha) = processor.taxonomy_id();
    let path = models_dir.map(|d| LocalModel::path(d, processor.name(), &sha));
    let exists = path.as_ref().is_some_and(|p| p.is_file());
    if !exists {
        if wants {
            return Err(user(format!(
                "no trained local model for processor {} and taxonomy {taxonomy:?}: run \
                 `github-analysis train {} --taxonomy FILE` first (or use --model rules)",
                processor.name(),
                processor.name()
            )));
        }
        return Ok(());
    }
    let Some(path) = path else { return Ok(()) };
    let model = LocalModel::load(&path)?;
    processor.attach_local(Arc::new(model))?;
    if fallback {
        let m = processor.local_model().map(|m| &m.info);
        resolved.spec = ModelSpec::parse("local")?;
        resolved.notice = Some(format!(
            "no --model or API key: using the trained `local` model of taxonomy {taxonomy:?} \
             ({} training issues, trained {})",
            m.map_or(0, |i| i.training_ids.len()),
            m.map_or("?", |i| i.created_at.as_str())
        ));
    }
    Ok(())
}

/// Most few-shot examples per prompt: beyond this, prompts grow for little gain.
pub const MAX_EXAMPLES: usize = 20;

/// Attaches the few-shot example index (`--examples K`), built by `train` next to the model.
pub fn attach_examples(
    resolved: &ResolvedModel,
    processor: &mut Processor,
    models_dir: Option<&Path>,
    k: usize,
) -> anyhow::Result<()> {
    if resolved.spec.provider.is_offline() {
        return Err(user(format!(
            "--examples adds examples to AI prompts; the {} model has no prompt",
            resolved.spec.id()
        )));
    }
    if k > MAX_EXAMPLES {
        return Err(user(format!("--examples {k}: at most {MAX_EXAMPLES}")));
    }
    let (taxonomy, sha) = processor.taxonomy_id();
    let path = models_dir.map(|d| LocalModel::path(d, processor.name(), &sha));
    let Some(path) = path.filter(|p| p.is_file()) else {
        return Err(user(format!(
            "--examples needs the example index `train` builds: run `github-analysis train {} \
             --taxonomy FILE` for taxonomy {taxonomy:?} first",
            processor.name()
        )));
    };
    let model = LocalModel::load(&path)?;
    let index = ExampleIndex::load(&ExampleIndex::path(&path))?;
    if model.info.taxonomy_sha256 != sha || index.taxonomy_sha256 != sha {
        return Err(user(
            "the example index belongs to another taxonomy: run `train` again",
        ));
    }
    processor.attach_few_shot(FewShot {
        model: Arc::new(model),
        index: Arc::new(index),
        k,
    });
    Ok(())
}
