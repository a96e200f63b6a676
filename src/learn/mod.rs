//! The learned offline model `local`: hashed TF-IDF features, a calibrated sparse linear
//! classifier and the model file. Pure computation and one file format; the commands read
//! training issues from DuckDB and decide where the file lives (docs/quality.md).

pub mod classifier;
pub mod examples;
pub mod features;
pub mod model;

pub use examples::ExampleIndex;
pub use features::Text;
pub use model::{LabelScore, LocalModel, ModelInfo, TrainingDoc};
