//! Confirmation before a command changes something outside the data directory: asked on a
//! terminal (default no), refused without one (exit 2) instead of hanging in a script.

use std::io::IsTerminal;

use crate::error::user;

/// Whether there is a person to ask (stdin and stderr are terminals).
pub fn terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Refuses without a terminal, `refusing` saying what was not done ("refusing to … without
/// confirmation: there is no terminal to ask on; pass --yes…").
pub fn require_terminal(refusing: &str) -> anyhow::Result<()> {
    if terminal() {
        Ok(())
    } else {
        anyhow::bail!("{refusing}")
    }
}

/// Asks `prompt`; a "no" is an error saying what was left untouched (`cancelled`).
pub fn confirm(prompt: &str, cancelled: &str) -> anyhow::Result<()> {
    let go = dialoguer::Confirm::new()
        .with_prompt(prompt)
        .default(false)
        .interact()
        .map_err(|e| anyhow::anyhow!("cannot ask for confirmation: {e}; pass --yes"))?;
    if go {
        Ok(())
    } else {
        Err(user(cancelled))
    }
}
