//! `Reporter`: how the library layers tell the user what is happening — notes, warnings and
//! progress bars — without knowing where it goes. The printer implements it for commands;
//! [`Silent`] serves benchmarks, tests and library users who want no output.

use indicatif::ProgressBar;

pub trait Reporter: Send + Sync {
    /// An informational message (stderr; nothing with `--quiet`).
    fn note(&self, text: &str);
    /// A warning (stderr, always).
    fn warn(&self, text: &str);
    /// A progress bar of `len` steps labelled `label`; hidden when nobody can see it.
    fn progress(&self, len: u64, label: &str) -> ProgressBar;
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn note(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn progress(&self, _: u64, _: &str) -> ProgressBar {
        ProgressBar::hidden()
    }
}
