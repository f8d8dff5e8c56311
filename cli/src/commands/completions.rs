//! `monotone completions <bash|zsh|fish|elvish|powershell>` and
//! `monotone man`: the shell completion script and the manual page, both
//! made from the command line's clap definition ([`crate::cli::definition`]),
//! so they list every command and flag this binary has. They need no id
//! and no store.

use std::io::Write;

use clap::Args;
use clap_complete::Shell;

use crate::exit::Failure;

const COMPLETIONS_HELP: &str = "\
Install (the README has the same list):
  bash  monotone completions bash > /etc/bash_completion.d/monotone
        (or ~/.local/share/bash-completion/completions/monotone)
  zsh   monotone completions zsh > \"${fpath[1]}/_monotone\"
  fish  monotone completions fish > ~/.config/fish/completions/monotone.fish
  elvish, powershell: print it and source it from the shell's rc file";

/// Print the completion script of a shell on stdout
#[derive(Debug, Args)]
#[command(after_help = COMPLETIONS_HELP)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print the manual page (roff) on stdout: `monotone man | man -l -`
#[derive(Debug, Args)]
pub struct ManArgs {}

/// Print the completion script for `args.shell`.
pub fn completions(args: &CompletionsArgs) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::cli::definition(),
        "monotone",
        &mut script,
    );
    write_out(&script)
}

/// Print the manual page.
pub fn man() -> Result<(), Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(crate::cli::definition())
        .render(&mut page)
        .map_err(|e| Failure::Other(format!("cannot make the manual page: {e}")))?;
    write_out(&page)
}

/// Write `bytes` to stdout; a closed stdout is not a failure.
fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Other(format!("cannot write the result: {e}"))),
    }
}
