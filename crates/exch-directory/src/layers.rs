//! Layers around any [`Directory`] — [`LdapDirectory`](crate::LdapDirectory),
//! [`InMemoryDirectory`](crate::InMemoryDirectory) or your own — in the style of
//! `object_store`'s `LimitStore<T>`: a [`Layered`] directory forwards **every** method of the
//! trait (the bulk ones and [`Directory::security_notes`] included, so the inner backend's own
//! bulk paths still run) and calls its [`Hook`] before each operation:
//!
//! - [`Latency`]: a fixed delay before every operation;
//! - [`Faults`]: injected errors, per [`Operation`], for the next N calls or always;
//! - [`CallLog`]: records every operation and the object it was about (never a password),
//!   and every trait [`Method`] called (a bulk call once);
//! - [`Limit`]: at most N calls at once, the others wait (like `object_store`'s `LimitStore`).
//!
//! Layers nest (`Layered<Layered<LdapDirectory, Latency>, CallLog>`), and `Arc<D>` / `Box<D>`
//! are directories too, so a shared backend can be wrapped without giving it up. Each layer
//! passes the `conformance` suite through itself
//! (`tests/layers.rs`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use exch_directory::layers::{CallLog, Faults, Layered};
//! use exch_directory::{Directory, Fault, InMemoryDirectory, Operation, UserRef};
//!
//! let dir = InMemoryDirectory::new();
//! dir.add_user("bob", "bob@lab.example.test", "Old-Passw0rd!");
//! let faults = Layered::new(Arc::new(dir), Faults::default());
//! faults.hook().fail_next(Operation::DisableAccount, Fault::Timeout, 1);
//! let logged = Layered::new(faults, CallLog::default());
//!
//! let bob = logged.find_account(&UserRef::parse("bob").unwrap()).await.unwrap();
//! assert!(logged.disable_account(&bob).await.is_err()); // injected, transient
//! assert!(logged.disable_account(&bob).await.is_ok()); // the retry goes through
//! assert_eq!(logged.hook().count(Operation::DisableAccount), 2);
//! # });
//! ```

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use exch_core::ExchangeServer;
use secrecy::SecretString;

use crate::{
    Account, AccountChanges, AuthResult, ChangeOutcome, Directory, DirectoryError, Dn,
    DomainController, Fault, Operation, UserRef,
};

/// Where injected errors say they come from.
const LAYER_URL: &str = "layer://fault-injection";

/// A method of [`Directory`] as a [`Hook`] sees it: once per call, a bulk call included
/// ([`Hook::enter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// The one-at-a-time method of this operation ([`Directory::find_account`] for
    /// [`Operation::FindAccount`], …).
    One(Operation),
    /// [`Directory::find_accounts`] (bulk).
    FindAccounts,
    /// [`Directory::accounts_on`] (bulk).
    AccountsOn,
    /// [`Directory::disable_and_reset`] (both changes of one account in one call).
    DisableAndReset,
}

impl Method {
    /// Whether this is one of the trait's bulk methods, whose defaults call the one-at-a-time
    /// methods and which a backend may do in fewer round trips.
    pub fn is_bulk(self) -> bool {
        !matches!(self, Method::One(_))
    }
}

/// What a [`Hook`] holds for the length of one call (see [`Hook::enter`]): dropped when the
/// call ends — answered, refused, or given up by its caller.
#[derive(Default)]
pub struct Held(Option<Box<dyn Any + Send + Sync>>);

impl Held {
    /// Holds `value` (a semaphore permit, a guard) until the call ends.
    pub fn new(value: impl Any + Send + Sync) -> Held {
        Held(Some(Box::new(value)))
    }
}

impl Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Held(..)"
        } else {
            "Held(nothing)"
        })
    }
}

/// What a [`Layered`] directory calls around each call and before each operation.
#[async_trait]
pub trait Hook: Debug + Send + Sync + 'static {
    /// Runs before `op` on `object` (a user, DN, DC name or `"(directory)"`), for each item
    /// of a bulk call; an error is returned to the caller instead of calling the inner
    /// directory.
    async fn before(&self, op: Operation, object: &str) -> Result<(), DirectoryError>;

    /// Runs once when a call of `method` starts, before any [`Hook::before`] of it (a bulk
    /// call is one call). What it returns is held until the call ends, however it ends —
    /// e.g. [`Limit`]'s permit. Default: holds nothing.
    async fn enter(&self, method: Method) -> Held {
        let _ = method;
        Held::default()
    }
}

/// A directory with a [`Hook`] in front of every operation.
#[derive(Debug)]
pub struct Layered<D, H> {
    inner: D,
    hook: H,
}

impl<D: Directory, H: Hook> Layered<D, H> {
    /// Wraps `inner`.
    pub fn new(inner: D, hook: H) -> Self {
        Layered { inner, hook }
    }

    /// The wrapped directory.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The hook (to change faults, read the call log).
    pub fn hook(&self) -> &H {
        &self.hook
    }

    /// Runs the hook for each item; returns the per-item refusals (`None`: go ahead).
    async fn screen<T>(
        &self,
        items: &[T],
        op: Operation,
        name: impl Fn(&T) -> String,
    ) -> Vec<Option<DirectoryError>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.hook.before(op, &name(item)).await.err());
        }
        out
    }
}

/// Puts the inner results of the items that were let through back among the refusals.
fn merge<T>(
    refused: Vec<Option<DirectoryError>>,
    passed: Vec<Result<T, DirectoryError>>,
) -> Vec<Result<T, DirectoryError>> {
    let mut passed = passed.into_iter();
    refused
        .into_iter()
        .map(|r| match r {
            Some(e) => Err(e),
            None => passed.next().unwrap_or_else(|| {
                Err(DirectoryError::Protocol {
                    url: LAYER_URL.into(),
                    operation: "bulk call".into(),
                    detail: "the inner directory returned fewer results than asked".into(),
                    source: None,
                })
            }),
        })
        .collect()
}

fn passed<T: Clone>(items: &[T], refused: &[Option<DirectoryError>]) -> Vec<T> {
    items
        .iter()
        .zip(refused)
        .filter(|(_, r)| r.is_none())
        .map(|(i, _)| i.clone())
        .collect()
}

const WHOLE: &str = "(directory)";

#[async_trait]
impl<D: Directory, H: Hook> Directory for Layered<D, H> {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        let _held = self.hook.enter(Method::One(Operation::FindAccount)).await;
        self.hook
            .before(Operation::FindAccount, &user.to_string())
            .await?;
        self.inner.find_account(user).await
    }

    async fn disable_account(&self, account: &Account) -> Result<ChangeOutcome, DirectoryError> {
        let _held = self
            .hook
            .enter(Method::One(Operation::DisableAccount))
            .await;
        self.hook
            .before(Operation::DisableAccount, account.dn.as_str())
            .await?;
        self.inner.disable_account(account).await
    }

    async fn enable_account(&self, account: &Account) -> Result<ChangeOutcome, DirectoryError> {
        let _held = self.hook.enter(Method::One(Operation::EnableAccount)).await;
        self.hook
            .before(Operation::EnableAccount, account.dn.as_str())
            .await?;
        self.inner.enable_account(account).await
    }

    async fn reset_password(
        &self,
        account: &Account,
        new: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError> {
        let _held = self.hook.enter(Method::One(Operation::ResetPassword)).await;
        self.hook
            .before(Operation::ResetPassword, account.dn.as_str())
            .await?;
        self.inner.reset_password(account, new).await
    }

    async fn authenticate(
        &self,
        user: &str,
        password: &SecretString,
    ) -> Result<AuthResult, DirectoryError> {
        let _held = self.hook.enter(Method::One(Operation::Authenticate)).await;
        self.hook.before(Operation::Authenticate, user).await?;
        self.inner.authenticate(user, password).await
    }

    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
        let _held = self
            .hook
            .enter(Method::One(Operation::ExchangeServers))
            .await;
        self.hook.before(Operation::ExchangeServers, WHOLE).await?;
        self.inner.exchange_servers().await
    }

    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
        let _held = self
            .hook
            .enter(Method::One(Operation::DomainControllers))
            .await;
        self.hook
            .before(Operation::DomainControllers, WHOLE)
            .await?;
        self.inner.domain_controllers().await
    }

    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError> {
        let _held = self.hook.enter(Method::One(Operation::AccountOn)).await;
        self.hook
            .before(Operation::AccountOn, &format!("{dn} on {}", dc.name))
            .await?;
        self.inner.account_on(dc, dn).await
    }

    fn security_notes(&self) -> Vec<String> {
        self.inner.security_notes()
    }

    async fn find_accounts(&self, users: &[UserRef]) -> Vec<Result<Account, DirectoryError>> {
        let _held = self.hook.enter(Method::FindAccounts).await;
        let refused = self
            .screen(users, Operation::FindAccount, ToString::to_string)
            .await;
        let go = passed(users, &refused);
        let found = if go.is_empty() {
            Vec::new()
        } else {
            self.inner.find_accounts(&go).await
        };
        merge(refused, found)
    }

    async fn accounts_on(
        &self,
        dc: &DomainController,
        dns: &[Dn],
    ) -> Vec<Result<Account, DirectoryError>> {
        let _held = self.hook.enter(Method::AccountsOn).await;
        let refused = self
            .screen(dns, Operation::AccountOn, |dn| {
                format!("{dn} on {}", dc.name)
            })
            .await;
        let go = passed(dns, &refused);
        let read = if go.is_empty() {
            Vec::new()
        } else {
            self.inner.accounts_on(dc, &go).await
        };
        merge(refused, read)
    }

    async fn disable_and_reset<'a>(
        &self,
        account: &Account,
        disable: bool,
        new_password: Option<&'a SecretString>,
    ) -> AccountChanges {
        let _held = self.hook.enter(Method::DisableAndReset).await;
        let dn = account.dn.as_str();
        let disable_refused = match disable {
            true => self.hook.before(Operation::DisableAccount, dn).await.err(),
            false => None,
        };
        let reset_refused = match new_password {
            Some(_) => self.hook.before(Operation::ResetPassword, dn).await.err(),
            None => None,
        };
        let go_disable = disable && disable_refused.is_none();
        let go_reset = new_password.filter(|_| reset_refused.is_none());
        let inner = if go_disable || go_reset.is_some() {
            self.inner
                .disable_and_reset(account, go_disable, go_reset)
                .await
        } else {
            AccountChanges::default()
        };
        AccountChanges {
            disable: disable_refused.map(Err).or(inner.disable),
            reset_password: reset_refused.map(Err).or(inner.reset_password),
        }
    }
}

/// `Arc<D>` and `Box<D>` forward every method to `D`.
macro_rules! forward_directory {
    ($ptr:ident) => {
        #[async_trait]
        impl<D: Directory + ?Sized> Directory for $ptr<D> {
            async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
                (**self).find_account(user).await
            }
            async fn disable_account(
                &self,
                account: &Account,
            ) -> Result<ChangeOutcome, DirectoryError> {
                (**self).disable_account(account).await
            }
            async fn enable_account(
                &self,
                account: &Account,
            ) -> Result<ChangeOutcome, DirectoryError> {
                (**self).enable_account(account).await
            }
            async fn reset_password(
                &self,
                account: &Account,
                new: &SecretString,
            ) -> Result<ChangeOutcome, DirectoryError> {
                (**self).reset_password(account, new).await
            }
            async fn authenticate(
                &self,
                user: &str,
                password: &SecretString,
            ) -> Result<AuthResult, DirectoryError> {
                (**self).authenticate(user, password).await
            }
            async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
                (**self).exchange_servers().await
            }
            async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
                (**self).domain_controllers().await
            }
            async fn account_on(
                &self,
                dc: &DomainController,
                dn: &Dn,
            ) -> Result<Account, DirectoryError> {
                (**self).account_on(dc, dn).await
            }
            fn security_notes(&self) -> Vec<String> {
                (**self).security_notes()
            }
            async fn find_accounts(
                &self,
                users: &[UserRef],
            ) -> Vec<Result<Account, DirectoryError>> {
                (**self).find_accounts(users).await
            }
            async fn accounts_on(
                &self,
                dc: &DomainController,
                dns: &[Dn],
            ) -> Vec<Result<Account, DirectoryError>> {
                (**self).accounts_on(dc, dns).await
            }
            async fn disable_and_reset<'a>(
                &self,
                account: &Account,
                disable: bool,
                new_password: Option<&'a SecretString>,
            ) -> AccountChanges {
                (**self)
                    .disable_and_reset(account, disable, new_password)
                    .await
            }
        }
    };
}

forward_directory!(Arc);
forward_directory!(Box);

/// A fixed delay before every operation (each item of a bulk call counts as one).
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency(pub Duration);

#[async_trait]
impl Hook for Latency {
    async fn before(&self, _: Operation, _: &str) -> Result<(), DirectoryError> {
        if !self.0.is_zero() {
            tokio::time::sleep(self.0).await;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct FaultState {
    next: HashMap<Operation, VecDeque<Fault>>,
    always: HashMap<Operation, Fault>,
}

/// Injected errors per [`Operation`]: the next N calls, or every call until cleared.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Faults {
    /// The next `times` calls of `op` fail with `fault` (after any queued before).
    pub fn fail_next(&self, op: Operation, fault: Fault, times: usize) -> &Self {
        lock(&self.state)
            .next
            .entry(op)
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
        self
    }

    /// Every call of `op` fails with `fault` until [`clear`](Self::clear).
    pub fn fail_always(&self, op: Operation, fault: Fault) -> &Self {
        lock(&self.state).always.insert(op, fault);
        self
    }

    /// No more injected errors.
    pub fn clear(&self) {
        *lock(&self.state) = FaultState::default();
    }
}

#[async_trait]
impl Hook for Faults {
    async fn before(&self, op: Operation, object: &str) -> Result<(), DirectoryError> {
        let fault = {
            let mut state = lock(&self.state);
            let queued = state.next.get_mut(&op).and_then(VecDeque::pop_front);
            queued.or_else(|| state.always.get(&op).copied())
        };
        match fault {
            Some(f) => Err(f.error_at(LAYER_URL, op, object)),
            None => Ok(()),
        }
    }
}

/// One operation a [`CallLog`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The operation.
    pub operation: Operation,
    /// What it was about: the user as given, the account's DN, `DN on DC`, or `(directory)`.
    pub object: String,
}

/// Records every operation, in the order they arrived (passwords are never recorded), and
/// every call by its trait [`Method`].
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Mutex<Vec<Call>>,
    methods: Mutex<Vec<Method>>,
}

impl CallLog {
    /// Everything recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// The trait methods called so far, one entry per call (a bulk call once), in order:
    /// whether the inner directory got [`Directory::find_accounts`] or one
    /// [`Directory::find_account`] per user.
    pub fn methods(&self) -> Vec<Method> {
        lock(&self.methods).clone()
    }

    /// How many calls of `op` were recorded.
    pub fn count(&self, op: Operation) -> usize {
        lock(&self.calls)
            .iter()
            .filter(|c| c.operation == op)
            .count()
    }
}

#[async_trait]
impl Hook for CallLog {
    async fn before(&self, op: Operation, object: &str) -> Result<(), DirectoryError> {
        lock(&self.calls).push(Call {
            operation: op,
            object: object.to_owned(),
        });
        Ok(())
    }

    async fn enter(&self, method: Method) -> Held {
        lock(&self.methods).push(method);
        Held::default()
    }
}

/// At most `n` calls at once through the layer — of every method, or of one
/// ([`Limit::only`]); a bulk call counts once. The others wait their turn, first come first
/// served, as with `object_store`'s `LimitStore`.
#[derive(Debug, Clone)]
pub struct Limit {
    permits: Arc<tokio::sync::Semaphore>,
    only: Option<Method>,
}

impl Limit {
    /// At most `n` calls at once (at least one).
    pub fn new(n: usize) -> Self {
        Limit {
            permits: Arc::new(tokio::sync::Semaphore::new(n.max(1))),
            only: None,
        }
    }

    /// Limits only the calls of `method`; the others pass at once.
    pub fn only(mut self, method: Method) -> Self {
        self.only = Some(method);
        self
    }
}

#[async_trait]
impl Hook for Limit {
    async fn before(&self, _: Operation, _: &str) -> Result<(), DirectoryError> {
        Ok(())
    }

    async fn enter(&self, method: Method) -> Held {
        if self.only.is_some_and(|m| m != method) {
            return Held::default();
        }
        // The semaphore is never closed: `Err` cannot happen, and would only mean no limit.
        match Arc::clone(&self.permits).acquire_owned().await {
            Ok(permit) => Held::new(permit),
            Err(_) => Held::default(),
        }
    }
}
