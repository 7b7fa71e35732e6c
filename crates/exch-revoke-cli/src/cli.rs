//! The `exch-revoke` command line: subcommands and their wiring.

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::CliError;
use crate::exit::{self, Exit};
use crate::job::{self, PasswordArgs, RecordArgs, ResumeArgs, TargetArgs};
use crate::output::{Out, ProgressMode};
use crate::settings::{ConnectionArgs, Settings};
use crate::{audit, completions, profile_check};

const ABOUT: &str =
    "Revoke compromised Exchange on-premises users for real: disable / reset in AD over LDAPS, \
wait for every DC, flush the IIS token caches on every Exchange server over WinRM, prove the old \
credentials are refused, report.";

const AFTER_HELP: &str = "Connection settings come from a profile (--profile NAME; see `exch-revoke profile --help`) \
and flags, which win. Passwords never come from argv: environment variables, a command, or a prompt.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "exch-revoke",
    version,
    about = ABOUT,
    before_long_help = AFTER_HELP,
    after_help = exit::EXIT_CODES_HELP,
    after_long_help = exit::EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    conn: ConnectionArgs,
    /// Progress: bars on a terminal (default; plain lines when piped), one JSON event per
    /// line on stderr, or none.
    #[arg(long, global = true, value_enum, default_value = "bar")]
    progress: ProgressMode,
    /// No colour (colour is only ever used on a terminal, and never with NO_COLOR set).
    #[arg(long, global = true)]
    no_color: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Revoke one or many users: disable / reset, wait for the DCs, flush every server,
    /// verify, report.
    #[command(after_help = exit::EXIT_CODES_HELP)]
    Revoke {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        passwords: PasswordArgs,
        #[command(flatten)]
        records: RecordArgs,
    },
    /// The dry run: which accounts, DCs, servers and pools a revoke would touch. Changes
    /// nothing.
    #[command(after_help = exit::EXIT_CODES_HELP)]
    Plan {
        #[command(flatten)]
        target: TargetArgs,
        /// Print the plan as JSON on stdout (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Finish a run that was interrupted, killed or only partly done, from its journal or
    /// its report; nothing done is done again.
    #[command(after_help = exit::EXIT_CODES_HELP)]
    Resume(ResumeArgs),
    /// Audit the fleet before an incident: servers, WinRM, UserTokenTTL, pools, DCs.
    #[command(after_help = exit::EXIT_CODES_HELP)]
    Audit(audit::AuditArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completions(completions::CompletionsArgs),
    /// Profiles (saved connection settings): `exch-revoke profile check`.
    #[command(subcommand)]
    Profile(ProfileCommand),
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Try every endpoint of the profile (DC bind, every DC, every server's WinRM); change
    /// nothing.
    #[command(after_help = exit::EXIT_CODES_HELP)]
    Check,
}

/// The `clap` command (for completions and tests).
pub fn command() -> clap::Command {
    Cli::command()
}

async fn run(cli: Cli, out: &mut Out) -> Result<Exit, CliError> {
    match &cli.command {
        Command::Completions(args) => completions::run(args, Cli::command()),
        Command::Revoke {
            target,
            passwords,
            records,
        } => {
            let settings = Settings::resolve(&cli.conn)?;
            job::revoke(&settings, target, passwords, records, out).await
        }
        Command::Plan { target, json } => {
            let settings = Settings::resolve(&cli.conn)?;
            job::plan(&settings, target, *json, out).await
        }
        Command::Resume(args) => {
            let settings = Settings::resolve(&cli.conn)?;
            job::resume(&settings, args, out).await
        }
        Command::Audit(args) => {
            let settings = Settings::resolve(&cli.conn)?;
            audit::run(&settings, args, out).await
        }
        Command::Profile(ProfileCommand::Check) => {
            let settings = Settings::resolve(&cli.conn)?;
            profile_check::run(&settings, out).await
        }
    }
}

/// Logs (`RUST_LOG`, to stderr; nothing by default). No password appears at any level.
fn init_logs() {
    if let Ok(mut filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        // sspi's own TRACE spans print Kerberos authenticators (session sub-keys) with their
        // return values: keep them out unless RUST_LOG names sspi explicitly.
        if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("sspi")) {
            if let Ok(d) = "sspi=debug".parse() {
                filter = filter.add_directive(d);
            }
        }
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_env_filter(filter)
            .init();
    }
}

/// Parses the command line, runs the subcommand, prints the error if any, and returns the
/// exit code.
pub async fn main() -> Exit {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::BadInput
            } else {
                Exit::Revoked
            };
        }
    };
    init_logs();
    let mut out = Out::stdio(cli.progress, cli.no_color);
    let exit = match run(cli, &mut out).await {
        Ok(exit) => exit,
        Err(e) => {
            out.error(&e);
            e.exit()
        }
    };
    out.flush();
    exit
}
