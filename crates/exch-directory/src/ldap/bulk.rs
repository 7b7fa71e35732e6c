//! Bulk work for [`LdapDirectory`]: many lookups per search, disable + reset in one modify.

use ldap3::{Mod, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};

use super::conn::{self, attr, map_error, one, search};
use super::{
    account_from, password_result, unicode_pwd, LdapDirectory, ACCOUNT_ATTRS, USER_FILTER,
};
use crate::escape::{dn_canonical, exact_dn, filter_value, parse_dn};
use crate::{Account, ChangeOutcome, Directory, DirectoryError, Dn, UserRef};

/// Users per search in [`Directory::find_accounts`].
pub(super) const FIND_CHUNK: usize = 100;

impl LdapDirectory {
    /// [`Directory::disable_and_reset`]: a read of the account, then one modify (guarded
    /// `userAccountControl` swap from the value just read, plus `unicodePwd` when
    /// resetting); on any refusal the one-action methods run instead (the modify is atomic,
    /// so nothing of it was applied unless the connection broke mid-way, and they are
    /// idempotent), which re-read the account and attribute each error to its action.
    ///
    /// The swap is not guarded by the `userAccountControl` in `account`: Samba accepts a
    /// delete of a value the attribute does not hold when the added value is the current one,
    /// so a swap from a stale enabled value to the disabled one succeeds on an account that
    /// someone else disabled meanwhile, and the disable would be reported `Applied` instead
    /// of `AlreadySo` (conformance `disable_and_reset_flow`).
    pub(super) async fn disable_and_reset_combined(
        &self,
        account: &Account,
        disable: bool,
        new_password: Option<&SecretString>,
    ) -> crate::AccountChanges {
        let password_refused =
            new_password.is_some_and(|new| !self.is_encrypted() || new.expose_secret().is_empty());
        if !disable || password_refused || parse_dn(account.dn.as_str()).is_err() {
            // The one-action methods refuse with the precise error.
            return crate::one_at_a_time(self, account, disable, new_password).await;
        }
        let url = self.inner.url.as_str();
        let uac = match self.read_account(url, account.dn.as_str()).await {
            Ok(current) if !current.is_disabled() => current.user_account_control,
            // Already disabled (nothing to swap) or unreadable: the one-action methods say so.
            _ => return crate::one_at_a_time(self, account, disable, new_password).await,
        };
        let dn = account.dn.as_str();
        let timeout = self.timeout();
        let operation = match new_password {
            Some(_) => format!("disable and password reset of {dn}"),
            None => format!("disable {dn}"),
        };
        let combined = self
            .run(url, &operation, false, |mut ldap| async move {
                let (del_name, del_values) =
                    one("userAccountControl", uac.0.to_string().into_bytes());
                let (add_name, add_values) = one(
                    "userAccountControl",
                    uac.disabled().0.to_string().into_bytes(),
                );
                let mut mods = vec![
                    Mod::Delete(del_name, del_values),
                    Mod::Add(add_name, add_values),
                ];
                if let Some(new) = new_password {
                    let (pwd_name, pwd_values) =
                        one("unicodePwd", unicode_pwd(new.expose_secret()));
                    mods.push(Mod::Replace(pwd_name, pwd_values));
                }
                let res = conn::modify(&mut ldap, timeout, dn, mods)
                    .await
                    .map_err(|e| map_error("disable and password reset", url, dn, e))?;
                password_result(url, dn, res)
            })
            .await;
        match combined {
            Ok(_) => {
                tracing::info!(
                    dn,
                    from = uac.0,
                    to = uac.disabled().0,
                    reset = new_password.is_some(),
                    "disabled (and password reset) in one modify"
                );
                crate::AccountChanges {
                    disable: Some(Ok(ChangeOutcome::Applied)),
                    reset_password: new_password.map(|_| Ok(ChangeOutcome::Applied)),
                }
            }
            Err(e) => {
                tracing::debug!(dn, error = %e, "combined modify refused; one action at a time");
                crate::one_at_a_time(self, account, true, new_password).await
            }
        }
    }

    /// Up to [`FIND_CHUNK`] accounts read on the server at `url` with one search (an OR of
    /// DN equalities, which ldb answers by DN lookups); a DN without its entry in the answer
    /// (or a failed search) is read on its own, so every answer is what `read_account` says.
    pub(super) async fn read_chunk(
        &self,
        url: &str,
        dns: &[Dn],
    ) -> Vec<Result<Account, DirectoryError>> {
        let valid: Vec<&Dn> = dns
            .iter()
            .filter(|d| parse_dn(d.as_str()).is_ok())
            .collect();
        let entries = if valid.len() > 1 {
            let clauses: String = valid
                .iter()
                .map(|d| format!("(distinguishedName={})", filter_value(d.as_str())))
                .collect();
            let filter = format!("(&{USER_FILTER}(|{clauses}))");
            let what = format!("read {} accounts", valid.len());
            self.search_users_at(url, &filter, &what, "read accounts", &what)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(dns.len());
        // After a transient failure (DC down or slow) the rest of the chunk is not read one by
        // one: each read would wait for the same timeout.
        let mut broken: Option<String> = None;
        for dn in dns {
            let wanted = dn_canonical(dn.as_str());
            let hit = entries
                .iter()
                .find(|e| dn_canonical(attr(e, "distinguishedName").unwrap_or(&e.dn)) == wanted);
            let result = match (hit, &broken) {
                (Some(e), _) => account_from(e, url).and_then(|a| exact_dn(dn.as_str(), a)),
                (None, Some(why)) => Err(DirectoryError::Unreachable {
                    url: url.to_owned(),
                    detail: format!("{dn} not read: {why}"),
                    source: None,
                }),
                (None, None) => self.read_account(url, dn.as_str()).await,
            };
            if let Err(e) = &result {
                if e.is_transient() && broken.is_none() {
                    broken = Some(e.to_string());
                }
            }
            out.push(result);
        }
        out
    }

    /// The filter clause that finds `user` (not a DN).
    pub(super) fn user_clause(&self, user: &UserRef) -> Result<String, DirectoryError> {
        Ok(match user {
            UserRef::Upn(upn) => {
                let v = filter_value(upn);
                format!("(|(userPrincipalName={v})(mail={v}))")
            }
            UserRef::DownLevel { domain, sam } => {
                if let Some(nb) = &self.inner.netbios {
                    if !domain.eq_ignore_ascii_case(nb) {
                        return Err(DirectoryError::NotFound {
                            what: format!(
                                "{user} (domain {domain:?} is not this directory's domain {nb:?})"
                            ),
                        });
                    }
                }
                format!("(sAMAccountName={})", filter_value(sam))
            }
            UserRef::Sam(sam) => format!("(sAMAccountName={})", filter_value(sam)),
            other => {
                return Err(DirectoryError::InvalidInput {
                    what: format!("user {other}"),
                    reason: "unsupported kind of user reference".into(),
                })
            }
        })
    }

    /// A subtree search for user entries under the base DN.
    pub(super) async fn search_users(
        &self,
        filter: &str,
        operation: &str,
        object: &str,
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        self.search_users_at(&self.inner.url, filter, operation, "find account", object)
            .await
    }

    /// [`Self::search_users`] on the server at `url` (a domain controller's, for reads that
    /// check convergence there).
    /// `operation` names the attempt (retries, logs), `what` the failed search in errors.
    async fn search_users_at(
        &self,
        url: &str,
        filter: &str,
        operation: &str,
        what: &str,
        object: &str,
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        let base = self.inner.base_dn.as_str();
        let timeout = self.timeout();
        self.run(url, operation, true, |mut ldap| async move {
            search(
                &mut ldap,
                timeout,
                base,
                Scope::Subtree,
                filter,
                ACCOUNT_ATTRS,
            )
            .await
            .map_err(|e| map_error(what, url, object, e))
            .map(Option::unwrap_or_default)
        })
        .await
    }

    /// Up to [`FIND_CHUNK`] users with one search; a user with no exact match among its
    /// entries (or a failed search) is looked up on its own, so every answer is exactly what
    /// [`Directory::find_account`] says.
    pub(super) async fn find_chunk(
        &self,
        users: &[UserRef],
    ) -> Vec<Result<Account, DirectoryError>> {
        let url = self.inner.url.as_str();
        let clauses: Vec<String> = users
            .iter()
            .filter(|u| crate::escape::check_user_ref(u).is_ok())
            .filter_map(|u| self.user_clause(u).ok())
            .collect();
        let entries = match clauses.len() {
            0 | 1 => Vec::new(),
            n => {
                let filter = format!("(&{USER_FILTER}(|{}))", clauses.concat());
                let what = format!("find {n} users");
                self.search_users(&filter, &what, &what)
                    .await
                    .unwrap_or_default()
            }
        };
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            let batch = match crate::escape::check_user_ref(user).and(self.user_clause(user)) {
                Ok(_) if !entries.is_empty() => {
                    crate::escape::exact_matches(user, &entries, |e, a| attr(e, a)).ok()
                }
                _ => None,
            };
            out.push(match batch {
                Some(found) if !found.is_empty() => pick(user, &found, url),
                _ => self.find_account(user).await,
            });
        }
        out
    }
}

/// Exactly one entry for `user`, or `NotFound` / `Ambiguous`.
pub(super) fn pick(
    user: &UserRef,
    entries: &[&SearchEntry],
    url: &str,
) -> Result<Account, DirectoryError> {
    let one = crate::error::exactly_one(user, entries, |e| e.dn.clone())?;
    account_from(one, url)
}
