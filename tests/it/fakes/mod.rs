//! Loopback fakes (axum on 127.0.0.1:0) of the services the CLI talks to, as strict as the real
//! ones where our clients are concerned. One module per provider API; [`serve`] runs any of them.
//! The examples include these files with `#[path]` (as siblings at their crate root), so a fake
//! names the others only as `super::…`.
//!
//! * [`openai`] — Chat Completions.
//! * [`anthropic`] — Messages.
//! * [`batches`] — OpenAI Files + Batches (`batches/openai.rs`) and Anthropic Message Batches
//!   (`batches/anthropic.rs`) over one shared, scripted state.
//! * [`github`] — GitHub REST and GraphQL.

pub mod anthropic;
pub mod batches;
pub mod github;
pub mod openai;
pub mod serve;
