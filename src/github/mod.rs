//! GitHub: the HTTP client (rate limits, retries, ETags), REST and GraphQL endpoints, object
//! models, attachments, and the `collect` pipeline built on them.

pub mod attachments;
pub mod client;
pub mod collector;
pub mod config;
pub mod fetch;
pub mod graphql;
pub mod limits;
pub mod models;
pub mod rest;
pub mod scope;
