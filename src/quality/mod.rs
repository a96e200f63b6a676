//! Label quality: metrics of predicted against human labels and the HTML report. Pure: the
//! `evaluate` command reads the rows from DuckDB and stores the run (docs/quality.md).

pub mod html;
pub mod metrics;

pub use metrics::{compute, Metrics, Sample};
