//! Error kinds and exit statuses: 0 success, 1 failure (the user's input or environment, or a
//! run that finished with failed items), 2 usage error or unexpected error.

use std::process::ExitCode;

/// A failure caused by the user's input or environment (bad SQL, bad file, bad name, locked
/// database). Attach it as the error or as context; it turns the exit status into `Failure`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

pub fn user(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(msg.into()))
}

/// Adds a user-facing message on top of a lower-level cause.
pub trait UserContext<T> {
    fn user_context(self, msg: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T, E> UserContext<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn user_context(self, msg: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| e.into().context(UserError(msg())))
    }
}

/// How a command ended, as the process exit code tells it. Commands return it; an error that
/// escapes a command is turned into one by [`ExitStatus::of_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done.
    Success,
    /// Done as far as possible, but something the user must look at failed (exit 1).
    Failure,
    /// Usage error or unexpected error (exit 2).
    Error,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Error => 2,
        }
    }

    /// The status of an error: a [`UserError`] (as the error or any context on it) is a `Failure`; a closed
    /// stdout (`| head`) is a `Success`; anything else is an `Error`.
    pub fn of_error(err: &anyhow::Error) -> Self {
        if is_broken_pipe(err) {
            Self::Success
        } else if err.downcast_ref::<UserError>().is_some() {
            Self::Failure
        } else {
            Self::Error
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(s.code())
    }
}

pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
