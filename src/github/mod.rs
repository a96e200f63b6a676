//! GitHub data: REST object models and their conversion to stored issues (the client that
//! fetches them arrives with `collect`).

pub mod models;
