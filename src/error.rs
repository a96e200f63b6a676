//! Error kinds and exit codes: 0 ok, 1 user error, 2 usage or unexpected error.

use std::process::ExitCode;

/// A failure caused by the user's input or environment (bad SQL, bad file, bad name, locked
/// database). Attach it as the error or as context; it turns the exit code into 1.
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

pub const EXIT_USER: u8 = 1;
pub const EXIT_UNEXPECTED: u8 = 2;

/// Prints `error: …` with its `Caused by:` chain on stderr and picks the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let mut chain = err.chain();
    if let Some(top) = chain.next() {
        eprintln!("error: {top}");
    }
    let causes: Vec<String> = chain.map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        eprintln!();
        eprintln!("Caused by:");
        for (i, c) in causes.iter().enumerate() {
            eprintln!("  {i}: {c}");
        }
    }
    ExitCode::from(exit_code(err))
}

pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UserError>().is_some() {
        EXIT_USER
    } else {
        EXIT_UNEXPECTED
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
