//! GitHub: the HTTP client (rate limits, retries, ETags), REST and GraphQL endpoints, object
//! models, attachments, the `collect` pipeline built on them, and the label and comment writes of
//! `update-labels` (`labels.rs`, paced by `pacing.rs`).

pub mod attachments;
pub mod client;
pub mod collector;
pub mod config;
pub mod fetch;
pub mod graphql;
pub mod labels;
pub mod limits;
pub mod models;
pub mod pacing;
pub mod rest;
pub mod scope;
