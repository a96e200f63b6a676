//! Acting on recommendations: the review loop (`review.rs`: one decision at a time, each
//! committed at once) and `update-labels` (`apply.rs`: approved labels to GitHub, additive by
//! default, re-reading every issue just before changing it; `local.rs` brings the issue files
//! and DuckDB in step with what GitHub answered). The recommendations themselves live in DuckDB
//! (`db/recommendations.rs`, derived by `db/discover.rs`). docs/recommendations.md is the manual.

pub mod apply;
pub mod comment;
pub mod local;
pub mod review;

use crate::db::RecRow;

/// `org/repo#n`.
pub fn issue_ref(rec: &RecRow) -> String {
    rec.issue_id.clone()
}
