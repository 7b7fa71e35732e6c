//! `RevokeMany` against a directory that holds every change at a gate and logs it: the
//! concurrency bound and the order of the contain-first phases.

use super::*;
use async_trait::async_trait;
use exch_directory::{AccountChanges, DirectoryError, Dn, DomainController, UserRef};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// One `disable_and_reset` call seen by [`Gated`]: entered (or returned), with which actions.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Call {
    returned: bool,
    disable: bool,
    reset: bool,
}

/// Directory whose `disable_and_reset` waits for the test to release it, and logs its calls.
#[derive(Debug)]
struct Gated {
    inner: InMemoryDirectory,
    gate: Semaphore,
    in_flight: AtomicUsize,
    max: AtomicUsize,
    waiting: AtomicUsize,
    log: std::sync::Mutex<Vec<Call>>,
}

impl Gated {
    /// `lab(n)` behind a closed gate.
    fn lab(n: usize) -> (Arc<Gated>, Vec<String>) {
        let (dir, users) = lab(n);
        let gated = Gated {
            inner: Arc::try_unwrap(dir).unwrap(),
            gate: Semaphore::new(0),
            in_flight: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            log: std::sync::Mutex::new(Vec::new()),
        };
        (Arc::new(gated), users)
    }

    fn log(&self, returned: bool, disable: bool, new: Option<&SecretString>) {
        self.log.lock().unwrap().push(Call {
            returned,
            disable,
            reset: new.is_some(),
        });
    }

    fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `n` calls wait at the gate (yielding: the test runtime is single-threaded).
    async fn until_waiting(&self, n: usize) {
        while self.waiting.load(Ordering::SeqCst) < n {
            tokio::task::yield_now().await;
        }
    }
}

#[async_trait]
impl Directory for Gated {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        self.inner.find_account(user).await
    }
    async fn disable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.disable_account(a).await
    }
    async fn enable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.enable_account(a).await
    }
    async fn reset_password(
        &self,
        a: &Account,
        new: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.reset_password(a, new).await
    }
    async fn authenticate(&self, u: &str, p: &SecretString) -> Result<AuthResult, DirectoryError> {
        self.inner.authenticate(u, p).await
    }
    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
        self.inner.exchange_servers().await
    }
    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
        self.inner.domain_controllers().await
    }
    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError> {
        self.inner.account_on(dc, dn).await
    }
    async fn disable_and_reset<'a>(
        &self,
        a: &Account,
        disable: bool,
        new: Option<&'a SecretString>,
    ) -> AccountChanges {
        self.log(false, disable, new);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let out = self.inner.disable_and_reset(a, disable, new).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.log(true, disable, new);
        out
    }
}

#[tokio::test]
async fn directory_work_is_bounded_by_max_in_flight() {
    let (gated, users) = Gated::lab(10);
    let run = Arc::new(
        Remediation::builder()
            .directory(gated.clone())
            .flusher(Arc::new(RecordingFlusher::new()))
            .users(users)
            .disable()
            .reset_password(NewPassword::Generate)
            .accounts_in_flight(3)
            .timeouts(exch_remediate::Timeouts {
                directory: Duration::from_secs(3600),
                ..Default::default()
            })
            .build_many()
            .unwrap(),
    );
    // `plan` and `execute` are Send: both can run on a spawned task.
    let plan = {
        let run = run.clone();
        tokio::spawn(async move { run.plan().await })
            .await
            .unwrap()
            .unwrap()
    };
    let task = {
        let run = run.clone();
        tokio::spawn(async move { run.execute(&plan).await })
    };
    // Release one account at a time; each time, exactly 3 must be waiting (10 = 3 + 7 more).
    for released in 0..10 {
        gated.until_waiting(3.min(10 - released)).await;
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gated.waiting.load(Ordering::SeqCst), 3.min(10 - released));
        gated.gate.add_permits(1);
    }
    let report = task.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(gated.max.load(Ordering::SeqCst), 3);
    // Default mode: one combined change per account.
    assert!(gated.calls().iter().all(|c| c.disable && c.reset));
}

#[tokio::test]
async fn contain_first_disables_every_account_before_any_reset() {
    let (gated, users) = Gated::lab(6);
    let run = Arc::new(
        Remediation::builder()
            .directory(gated.clone())
            .flusher(Arc::new(RecordingFlusher::new()))
            .users(users.clone())
            .disable()
            .reset_password(NewPassword::Generate)
            .accounts_in_flight(2)
            .contain_first()
            .timeouts(exch_remediate::Timeouts {
                directory: Duration::from_secs(3600),
                ..Default::default()
            })
            .build_many()
            .unwrap(),
    );
    let plan = run.plan().await.unwrap();
    assert!(plan.contain_first);
    assert!(
        plan.summary().contains("contain first"),
        "{}",
        plan.summary()
    );
    let task = {
        let run = run.clone();
        tokio::spawn(async move { run.execute(&plan).await })
    };
    // Phase 1: while any disable is held at the gate, only disables have been sent (two at a
    // time); release them one by one.
    for released in 0..6 {
        gated.until_waiting(2.min(6 - released)).await;
        let calls = gated.calls();
        assert!(calls.iter().all(|c| c.disable && !c.reset), "{calls:?}");
        gated.gate.add_permits(1);
    }
    // Phase 2: the resets.
    gated.until_waiting(2).await;
    gated.gate.add_permits(6);
    let report = task.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(gated.max.load(Ordering::SeqCst), 2);

    // Every disable returned before the first reset was sent; disable-only, then reset-only.
    let calls = gated.calls();
    assert_eq!(calls.len(), 24, "{calls:?}");
    let last_disable = calls.iter().rposition(|c| c.returned && c.disable).unwrap();
    let first_reset = calls.iter().position(|c| c.reset).unwrap();
    assert!(last_disable < first_reset, "{calls:?}");
    assert!(calls.iter().all(|c| c.disable != c.reset), "{calls:?}");
    assert_eq!(gated.inner.calls(Operation::DisableAccount), 6);
    assert_eq!(gated.inner.calls(Operation::ResetPassword), 6);

    // Per user both actions, as in the default mode; the containment time.
    for u in &report.users {
        let got: Vec<_> = u.actions.iter().map(|a| (a.action, a.outcome)).collect();
        assert_eq!(
            got,
            [
                (Action::Disable, Some(ChangeOutcome::Applied)),
                (Action::ResetPassword, Some(ChangeOutcome::Applied))
            ]
        );
        assert!(account(&gated.inner, &u.user).is_disabled());
    }
    let contained = report.contained_after.unwrap();
    assert!(contained <= report.elapsed);
    assert!(report
        .summary()
        .contains("contained: every account disabled after"));
    let change = report
        .steps
        .iter()
        .find(|s| s.step == exch_remediate::Step::ChangeDirectory)
        .unwrap();
    assert!(change.detail.contains("contain first"), "{}", change.detail);
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["contained_after"].is_u64(), "{json}");
}
