//! The typed states of the batch tables: job, part (one provider batch) and item statuses, and
//! the backend that runs a job. Rows are decoded into these when read, so no status is ever a
//! bare string above the database layer. What the states mean and how they move is documented
//! with the state machine in `batch/status.rs`.

use duckdb::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// An enum stored as a lowercase string column.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> duckdb::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = String::column_result(value)?;
                Self::parse(&text).ok_or_else(|| {
                    FromSqlError::Other(
                        format!(concat!("unknown ", stringify!($name), " {:?}"), text).into(),
                    )
                })
            }
        }
    };
}

string_enum! {
    /// A batch job's status: `preparing` → `submitted` → `validating` / `in_progress` /
    /// `finalizing` → `completed` | `failed` | `expired` | `cancelled` (via `cancelling`) →
    /// `collected` once every result is stored.
    JobStatus {
        Preparing = "preparing",
        Submitted = "submitted",
        Validating = "validating",
        InProgress = "in_progress",
        Finalizing = "finalizing",
        Completed = "completed",
        Failed = "failed",
        Expired = "expired",
        Cancelling = "cancelling",
        Cancelled = "cancelled",
        Collected = "collected",
        /// Every part left waits for room in the provider's queue (submitted by `batch status`).
        Queued = "queued",
    }
}

impl JobStatus {
    /// Statuses in which a job's items are still being worked on.
    pub const ACTIVE: &'static [JobStatus] = &[
        Self::Preparing,
        Self::Submitted,
        Self::Validating,
        Self::InProgress,
        Self::Finalizing,
        Self::Cancelling,
        Self::Queued,
    ];

    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }
}

string_enum! {
    /// A provider batch's status (one part of a job): ours before the provider knows it
    /// (`preparing`, `submitting`, `uploaded`), then the provider's, mapped.
    PartStatus {
        Preparing = "preparing",
        /// Marked (committed) before any provider call: the batch may exist without our knowing.
        Submitting = "submitting",
        /// OpenAI: the input file is uploaded, the batch not yet created.
        Uploaded = "uploaded",
        /// Written, waiting for room in the provider's queue of enqueued tokens.
        Queued = "queued",
        Validating = "validating",
        InProgress = "in_progress",
        Finalizing = "finalizing",
        Completed = "completed",
        Failed = "failed",
        Expired = "expired",
        Cancelling = "cancelling",
        Cancelled = "cancelled",
    }
}

impl PartStatus {
    /// After these nothing changes at the provider.
    pub const TERMINAL: &'static [PartStatus] = &[
        Self::Completed,
        Self::Failed,
        Self::Expired,
        Self::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// Not yet (known to be) at the provider.
    pub fn is_unsubmitted(self) -> bool {
        matches!(self, Self::Preparing | Self::Submitting | Self::Uploaded)
    }

    /// A provider call may have created the batch before we could record it.
    pub fn may_be_lost(self) -> bool {
        matches!(self, Self::Submitting | Self::Uploaded)
    }
}

string_enum! {
    /// One issue of a job: `preparing` → `pending` → `completed` | `failed` | `expired` |
    /// `cancelled`.
    ItemStatus {
        Preparing = "preparing",
        Pending = "pending",
        Completed = "completed",
        Failed = "failed",
        Expired = "expired",
        Cancelled = "cancelled",
    }
}

impl ItemStatus {
    /// Not settled yet.
    pub const OPEN: &'static [ItemStatus] = &[Self::Preparing, Self::Pending];
    /// Settled without a result: what `batch retry` resubmits.
    pub const RETRYABLE: &'static [ItemStatus] = &[Self::Failed, Self::Expired, Self::Cancelled];

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

string_enum! {
    /// What runs a job (the `batch_jobs.provider` column).
    Backend {
        /// The OpenAI Batch API.
        OpenAi = "openai",
        /// Anthropic Message Batches.
        Anthropic = "anthropic",
        /// This tool itself, with real-time requests (`rules`, or a server without a batch API).
        Local = "local",
    }
}

/// `'a', 'b'`: statuses as a SQL list (our own constants only, never user input).
pub fn sql_list<T: Copy>(values: &[T], text: impl Fn(T) -> &'static str) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", text(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_text() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(*s));
        }
        for s in PartStatus::ALL {
            assert_eq!(PartStatus::parse(s.as_str()), Some(*s));
        }
        for s in ItemStatus::ALL {
            assert_eq!(ItemStatus::parse(s.as_str()), Some(*s));
        }
        for s in Backend::ALL {
            assert_eq!(Backend::parse(s.as_str()), Some(*s));
        }
        assert_eq!(JobStatus::parse("running"), None);
        assert_eq!(
            sql_list(ItemStatus::OPEN, ItemStatus::as_str),
            "'preparing', 'pending'"
        );
    }
}
