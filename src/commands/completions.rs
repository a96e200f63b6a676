//! `completions SHELL | man`: shell completion scripts and the man page, generated from the
//! command tree so they never drift from it.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionTarget, CompletionsArgs};
use crate::commands::Ctx;
use crate::error::ExitStatus;

pub fn run(ctx: &Ctx, args: &CompletionsArgs) -> anyhow::Result<ExitStatus> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let shell = match args.target {
        CompletionTarget::Bash => Shell::Bash,
        CompletionTarget::Zsh => Shell::Zsh,
        CompletionTarget::Fish => Shell::Fish,
        CompletionTarget::Elvish => Shell::Elvish,
        CompletionTarget::Powershell => Shell::PowerShell,
        CompletionTarget::Man => {
            clap_mangen::Man::new(cmd).render(&mut out)?;
            ctx.printer.raw(&out)?;
            return Ok(ExitStatus::Success);
        }
    };
    clap_complete::generate(shell, &mut cmd, "github-analysis", &mut out);
    ctx.printer.raw(&out)?;
    Ok(ExitStatus::Success)
}
