//! `exch-revoke`: see the crate's README or `exch-revoke --help`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    exch_revoke_cli::cli::main().await.into()
}
