//! `Remediation::builder()`.

use exch_core::{ExchangeServer, Protocol, ServerRoles};
use exch_directory::{Directory, UserRef};
use exch_iis::{CacheFlusher, FlushMethod};
use secrecy::SecretString;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::engine::{Earlier, Engine, Target};
use crate::{
    Action, Event, ManyReport, NewPassword, Prober, Remediation, RemediationError, Report,
    RetryPolicy, Strategy, Timeouts,
};

/// Which servers to flush.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerSelection {
    pub(crate) given: Option<Vec<ExchangeServer>>,
    pub(crate) include: Vec<String>,
    pub(crate) exclude: Vec<String>,
    pub(crate) sites: Vec<String>,
    pub(crate) roles: Option<ServerRoles>,
}

/// Builds a [`Remediation`]. Required: [`directory`](Self::directory),
/// [`flusher`](Self::flusher), [`user`](Self::user) and at least one action.
#[derive(Debug, Default)]
pub struct RemediationBuilder {
    pub(crate) directory: Option<Arc<dyn Directory>>,
    pub(crate) flusher: Option<Arc<dyn CacheFlusher>>,
    pub(crate) user: Option<String>,
    /// Many-user input ([`crate::RevokeMany`]; see `many.rs`).
    pub(crate) many: crate::many::ManyInput,
    disable: bool,
    pub(crate) reset: Option<NewPassword>,
    force_reset: bool,
    selection: ServerSelection,
    protocols: Option<Vec<Protocol>>,
    method: FlushMethod,
    strategy: Strategy,
    timeouts: Timeouts,
    deadline: Option<std::time::Duration>,
    retry: RetryPolicy,
    cancel: Option<CancellationToken>,
    events: Option<UnboundedSender<Event>>,
    pub(crate) probe: Option<(Arc<dyn Prober>, SecretString)>,
    pub(crate) resume: Option<Earlier>,
    mailbox: Option<Arc<dyn exch_mailbox::MailboxAdmin>>,
    mailbox_actions: crate::MailboxActions,
}

impl RemediationBuilder {
    /// The directory backend.
    pub fn directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The cache-flushing backend.
    pub fn flusher(mut self, flusher: Arc<dyn CacheFlusher>) -> Self {
        self.flusher = Some(flusher);
        self
    }

    /// The user: `bob@corp.example`, `CORP\bob`, `bob` or a DN.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Disable the account.
    pub fn disable(mut self) -> Self {
        self.disable = true;
        self
    }

    /// Reset the password (generated or given).
    pub fn reset_password(mut self, new: NewPassword) -> Self {
        self.reset = Some(new);
        self
    }

    /// Reset the password again even if the report given to [`resume`](Self::resume) says an
    /// earlier run already did.
    pub fn force_reset(mut self) -> Self {
        self.force_reset = true;
        self
    }

    /// Flush exactly these servers instead of discovering them from the directory.
    pub fn servers(mut self, servers: Vec<ExchangeServer>) -> Self {
        self.selection.given = Some(servers);
        self
    }

    /// Only servers with these names (case-insensitive; repeatable).
    pub fn include_server(mut self, name: impl Into<String>) -> Self {
        self.selection.include.push(name.into());
        self
    }

    /// Never these servers (case-insensitive; repeatable).
    pub fn exclude_server(mut self, name: impl Into<String>) -> Self {
        self.selection.exclude.push(name.into());
        self
    }

    /// Only servers in these AD sites (repeatable).
    pub fn site(mut self, site: impl Into<String>) -> Self {
        self.selection.sites.push(site.into());
        self
    }

    /// Only servers with any of these roles.
    pub fn roles(mut self, roles: ServerRoles) -> Self {
        self.selection.roles = Some(roles);
        self
    }

    /// Only the pools that serve these protocols (default: the catalog's default set).
    pub fn protocols(mut self, protocols: &[Protocol]) -> Self {
        self.protocols = Some(protocols.to_vec());
        self
    }

    /// How to flush (default: [`FlushMethod::RecycleCatalogPools`], the catalog's pools; each
    /// recycles as IIS is configured: overlapped, or stop-then-start for MAPI and RPC).
    pub fn method(mut self, method: FlushMethod) -> Self {
        self.method = method;
        self
    }

    /// Parallel (default, 64 in flight) or rolling.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Time limits.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Limit for a whole [`execute`](Remediation::execute) (default: none; then a run that
    /// meets a hang on every server takes up to servers × attempts × `per_server` with
    /// [`Strategy::Rolling`]). Every wait and operation is cut to what is left: a flush still
    /// running at the deadline ends `Failed { kind: FailureKind::Timeout }` (see
    /// [`crate::FailureKind`]), servers not started by then
    /// are `Skipped` (and in `servers_to_retry`), convergence stops waiting; the report is
    /// complete and the outcome at best `Partial`. `execute` returns shortly after the deadline
    /// (the time to write the report and close connections).
    pub fn deadline(mut self, deadline: std::time::Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Retries of transient errors.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Cancellation: servers not yet started are skipped, flushes in flight finish (bounded by
    /// the per-server timeout), and the report says what was done.
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Progress events.
    pub fn events(mut self, tx: UnboundedSender<Event>) -> Self {
        self.events = Some(tx);
        self
    }

    /// After the flush, log on to every flushed server's endpoints with the **old** password and
    /// require refusal.
    pub fn probe_old_password(
        mut self,
        prober: Arc<dyn Prober>,
        old_password: SecretString,
    ) -> Self {
        self.probe = Some((prober, old_password));
        self
    }

    /// The mailbox backend (`exch_mailbox::WinRmMailbox`, or a fake): with it, every run
    /// reads each user's mobile devices, forwarding and inbox rules through one Exchange
    /// server (the plan names it) before the directory change, and reports them in the
    /// user's `mailbox` record and `residual` section; [`lockdown`](Self::lockdown),
    /// [`wipe_devices`](Self::wipe_devices) and [`remove_forwarding`](Self::remove_forwarding)
    /// change the mailbox too.
    pub fn mailbox(mut self, admin: Arc<dyn exch_mailbox::MailboxAdmin>) -> Self {
        self.mailbox = Some(admin);
        self
    }

    /// Refuse every protocol of the mailbox (`Set-CASMailbox`: OWA, EWS, ActiveSync, MAPI,
    /// Outlook Anywhere, POP, IMAP, ECP) and block every device: what closes Kerberos tickets
    /// and Windows-authenticated connections that a flush does not. Needs
    /// [`mailbox`](Self::mailbox).
    pub fn lockdown(mut self) -> Self {
        self.mailbox_actions = self.mailbox_actions.with_lockdown();
        self
    }

    /// Send a remote wipe to every device of the mailbox, **before** the lockdown blocks it
    /// (a blocked device never receives a wipe). Needs [`mailbox`](Self::mailbox).
    pub fn wipe_devices(mut self, mode: exch_mailbox::WipeMode) -> Self {
        self.mailbox_actions = self.mailbox_actions.with_wipe(mode);
        self
    }

    /// Remove the mailbox's forwarding, and disable or remove (`rules`) the inbox rules that
    /// forward, redirect or delete. Nothing else in the mailbox is touched. Needs
    /// [`mailbox`](Self::mailbox).
    pub fn remove_forwarding(mut self, rules: exch_mailbox::RuleAction) -> Self {
        self.mailbox_actions = self.mailbox_actions.with_forwarding_removed(rules);
        self
    }

    /// The mailbox step's changes all at once (as [`lockdown`](Self::lockdown),
    /// [`wipe_devices`](Self::wipe_devices) and [`remove_forwarding`](Self::remove_forwarding)
    /// set them); for callers that keep them, like the command-line tool's journal. Needs
    /// [`mailbox`](Self::mailbox) when it changes anything.
    pub fn mailbox_actions(mut self, actions: crate::MailboxActions) -> Self {
        self.mailbox_actions = actions;
        self
    }

    /// Continue after an earlier run: actions it applied are not repeated (unless
    /// [`force_reset`](Self::force_reset)); servers it proved flushed are skipped when this
    /// run changes nothing in the directory (a change made now is followed by a flush of every
    /// server). For many users, see [`resume_many`](Self::resume_many).
    pub fn resume(mut self, earlier: Report) -> Self {
        self.resume = Some(Earlier::One(Box::new(earlier)));
        self
    }

    /// [`resume`](Self::resume) with the report of an earlier many-user run (with
    /// [`users`](Self::users) or [`user`](Self::user)): per user, the actions that run
    /// applied are not repeated.
    pub fn resume_many(mut self, earlier: ManyReport) -> Self {
        self.resume = Some(Earlier::Many(Box::new(earlier)));
        self
    }

    /// Validates the input. Nothing is contacted. Refused: [`users`](Self::users) (use
    /// [`build_many`](Self::build_many)) and [`contain_first`](Self::contain_first).
    pub fn build(mut self) -> Result<Remediation, RemediationError> {
        if !self.many.users.is_empty() {
            return Err(RemediationError::invalid(
                "builder",
                "several users given with .users(..): call .build_many(), not .build()",
            ));
        }
        if self.many.contain_first {
            return Err(RemediationError::invalid(
                "contain_first",
                "only for many users (.users([..]) and .build_many()): a one-user run already disables the account before it resets the password",
            ));
        }
        let user_text = self.user.take().ok_or_else(|| {
            RemediationError::invalid("builder", "no user: call .user(\"bob@corp.example\")")
        })?;
        let user = UserRef::parse(&user_text)?;
        if let Some(Earlier::One(earlier)) = &self.resume {
            if earlier.user != user_text {
                return Err(RemediationError::invalid(
                    "resume",
                    format!(
                        "the earlier report is for {:?}, not {:?}; pass the report of the same user",
                        earlier.user, user_text
                    ),
                ));
            }
        }
        let probe = self.probe.take();
        let generate = matches!(self.reset, Some(NewPassword::Generate));
        let (engine, new_password) = self.engine()?;
        let new_password =
            new_password.filter(|_| !(generate && engine.reset_done_earlier(&user_text)));
        let (prober, old_password) = match probe {
            Some((p, old)) => (Some(p), Some(old)),
            None => (None, None),
        };
        Ok(Remediation {
            engine: Engine { prober, ..engine },
            target: Target {
                text: user_text,
                parsed: Ok(user),
                new_password,
                old_password,
            },
        })
    }

    /// What one-user and many-user runs share, validated: the engine (without a prober),
    /// and the new password for [`NewPassword::Given`] or one generated for
    /// [`NewPassword::Generate`].
    pub(crate) fn engine(self) -> Result<(Engine, Option<SecretString>), RemediationError> {
        let directory = self.directory.ok_or_else(|| {
            RemediationError::invalid("builder", "no directory: call .directory(..)")
        })?;
        let flusher = self
            .flusher
            .ok_or_else(|| RemediationError::invalid("builder", "no flusher: call .flusher(..)"))?;
        let mut actions = Vec::new();
        if self.disable {
            actions.push(Action::Disable);
        }
        let new_password = match self.reset {
            Some(NewPassword::Generate) => Some(exch_directory::generate_password()),
            Some(NewPassword::Given(p)) => Some(p),
            None => None,
        };
        if new_password.is_some() {
            actions.push(Action::ResetPassword);
        }
        if actions.is_empty() {
            return Err(RemediationError::invalid(
                "actions",
                "nothing to do: call .disable() and/or .reset_password(..)",
            ));
        }
        if self.strategy.concurrency() == 0 {
            return Err(RemediationError::invalid(
                "strategy",
                "max_in_flight / batch must be at least 1",
            ));
        }
        if self.mailbox.is_none() && self.mailbox_actions.changes_anything() {
            return Err(RemediationError::invalid(
                "mailbox actions",
                "lockdown, wipe_devices or remove_forwarding asked without a mailbox backend: add .mailbox(Arc::new(WinRmMailbox::new(flusher)))",
            ));
        }
        if matches!(&self.method, FlushMethod::RecycleAppPools(p) if p.is_empty()) {
            return Err(RemediationError::invalid(
                "method",
                "RecycleAppPools with no pool: name the pools, or use FlushMethod::RecycleCatalogPools for the catalog's",
            ));
        }
        if self.retry.attempts == 0 {
            return Err(RemediationError::invalid(
                "retry",
                "attempts must be at least 1",
            ));
        }
        let accounts_in_flight = self
            .many
            .accounts_in_flight
            .unwrap_or(crate::DEFAULT_ACCOUNTS_IN_FLIGHT);
        if accounts_in_flight == 0 {
            return Err(RemediationError::invalid(
                "accounts_in_flight",
                "must be at least 1",
            ));
        }
        Ok((
            Engine {
                directory,
                flusher,
                actions,
                force_reset: self.force_reset,
                selection: self.selection,
                protocols: self.protocols,
                method: self.method,
                strategy: self.strategy,
                timeouts: self.timeouts,
                deadline: self.deadline,
                retry: self.retry,
                cancel: self.cancel.unwrap_or_default(),
                events: self.events,
                prober: None,
                accounts_in_flight,
                contain_first: self.many.contain_first,
                skip_unresolved: self.many.skip_unresolved,
                earlier: self.resume,
                mailbox: self.mailbox,
                mailbox_actions: self.mailbox_actions,
            },
            new_password,
        ))
    }
}
