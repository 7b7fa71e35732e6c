//! `exch-revoke completions SHELL`: the shell completion script on stdout (clap_complete).
//!
//! ```text
//! exch-revoke completions bash > ~/.local/share/bash-completion/completions/exch-revoke
//! exch-revoke completions zsh  > "${fpath[1]}/_exch-revoke"
//! exch-revoke completions fish > ~/.config/fish/completions/exch-revoke.fish
//! exch-revoke completions powershell >> $PROFILE
//! ```

use std::io::Write;

use clap_complete::Shell;

use crate::error::CliError;
use crate::exit::Exit;

/// Options of `exch-revoke completions`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Install:
  bash        exch-revoke completions bash > ~/.local/share/bash-completion/completions/exch-revoke
  zsh         exch-revoke completions zsh > \"${fpath[1]}/_exch-revoke\"
  fish        exch-revoke completions fish > ~/.config/fish/completions/exch-revoke.fish
  PowerShell  exch-revoke completions powershell >> $PROFILE")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, ignore_case = true)]
    pub shell: Shell,
}

/// Prints the completion script for `args.shell` of `cmd` (the whole command line of the
/// tool) on stdout.
pub fn run(args: &CompletionsArgs, cmd: clap::Command) -> Result<Exit, CliError> {
    let script = script(args.shell, cmd);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            CliError::failed(
                Some("stdout".into()),
                format!("cannot write the completion script: {e}"),
                None,
            )
        })?;
    Ok(Exit::Revoked)
}

/// The completion script for `shell`, for the binary `exch-revoke`.
pub fn script(shell: Shell, mut cmd: clap::Command) -> Vec<u8> {
    let name = cmd.get_bin_name().unwrap_or("exch-revoke").to_owned();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("exch-revoke")
            .subcommand(clap::Command::new("audit").arg(clap::Arg::new("json").long("json")))
            .subcommand(clap::Command::new("completions"))
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_binary_and_its_subcommands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::PowerShell,
            Shell::Elvish,
        ] {
            let text = String::from_utf8(script(shell, cmd())).expect("UTF-8");
            assert!(text.contains("exch-revoke"), "{shell}: {text}");
            assert!(text.contains("audit"), "{shell}: {text}");
        }
    }
}
