//! What a directory write that failed in transport actually did.

use exch_directory::{Account, ChangeOutcome, UserRef};

use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::reasons::StepError;
use crate::Action;

/// A write that failed with a transient error (time-out, connection lost) may still have been
/// applied by the DC; the caller cannot tell from the error. This re-reads the account once:
///
/// * a disable that shows is confirmed: `Ok(Applied)` (the account is disabled, which is what
///   was asked, whoever's write did it);
/// * otherwise `Err` with the error **and** what the re-read found: the account still enabled,
///   the password unchanged (`pwdLastSet` as when the account was read), or changed (the reset
///   may have been applied: send the same password again), or that the re-read failed too.
///
/// Errors that are not transient are returned as they are: the write was refused.
pub(crate) async fn after_failed_write(
    r: &Engine,
    dl: Deadline,
    account: &Account,
    action: Action,
    error: StepError,
) -> Result<ChangeOutcome, String> {
    if !error.is_transient() {
        return Err(error.to_string());
    }
    let again = UserRef::Dn(account.dn.clone());
    let now = match r
        .dir_within(
            dl,
            "read the account again",
            r.directory.find_account(&again),
        )
        .await
    {
        Ok(now) => now,
        Err(e) => {
            return Err(format!(
            "{error}; whether it was applied is unknown: the account could not be read again ({e})"
        ))
        }
    };
    match action {
        Action::Disable if now.is_disabled() => {
            tracing::info!(dn = %account.dn, %error, "disable confirmed by a re-read after a transport error");
            Ok(ChangeOutcome::Applied)
        }
        Action::Disable => Err(format!(
            "{error}; a re-read shows the account still enabled: not applied"
        )),
        _ if now.pwd_last_set == account.pwd_last_set => Err(format!(
            "{error}; a re-read shows pwdLastSet unchanged: the reset was not applied"
        )),
        _ => Err(format!(
            "{error}; a re-read shows pwdLastSet changed since the account was read: the reset \
             was probably applied, but that cannot be proven; send the same password again \
             (resume with it) to be sure"
        )),
    }
}
