//! `RevokeMany` against the in-memory directory behind a layer ([`exch_directory::layers`])
//! whose hook holds every change at a gate and logs it: the concurrency bound and the order of
//! the contain-first phases.

use super::*;
use async_trait::async_trait;
use exch_directory::layers::{Held, Hook, Layered, Method};
use exch_directory::DirectoryError;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// What the gate saw, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    /// A `disable_and_reset` call arrived at the gate.
    Entered,
    /// It passed the gate and sends this change.
    Sends(Operation),
    /// It returned.
    Returned,
}

/// Holds every `disable_and_reset` call until the test releases it; counts and logs them.
#[derive(Debug)]
struct Gate {
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
    log: Arc<std::sync::Mutex<Vec<Seen>>>,
}

#[derive(Debug, Default)]
struct Counters {
    in_flight: AtomicUsize,
    max: AtomicUsize,
    waiting: AtomicUsize,
}

/// Held for the length of one call: counts it out and logs its return.
struct Leaving(Arc<Counters>, Arc<std::sync::Mutex<Vec<Seen>>>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.1.lock().unwrap().push(Seen::Returned);
    }
}

#[async_trait]
impl Hook for Gate {
    async fn before(&self, op: Operation, _: &str) -> Result<(), DirectoryError> {
        if matches!(op, Operation::DisableAccount | Operation::ResetPassword) {
            self.log.lock().unwrap().push(Seen::Sends(op));
        }
        Ok(())
    }

    async fn enter(&self, method: Method) -> Held {
        if method != Method::DisableAndReset {
            return Held::default();
        }
        self.log.lock().unwrap().push(Seen::Entered);
        let c = &self.counters;
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max.fetch_max(now, Ordering::SeqCst);
        c.waiting.fetch_add(1, Ordering::SeqCst);
        self.permits.acquire().await.unwrap().forget();
        c.waiting.fetch_sub(1, Ordering::SeqCst);
        Held::new(Leaving(Arc::clone(c), Arc::clone(&self.log)))
    }
}

type Gated = Layered<InMemoryDirectory, Gate>;

/// `lab(n)` behind a closed gate.
fn gated_lab(n: usize) -> (Arc<Gated>, Vec<String>) {
    let (dir, users) = lab(n);
    let gate = Gate {
        permits: Arc::new(Semaphore::new(0)),
        counters: Arc::default(),
        log: Arc::default(),
    };
    let gated = Layered::new(Arc::try_unwrap(dir).unwrap(), gate);
    (Arc::new(gated), users)
}

fn seen(g: &Gated) -> Vec<Seen> {
    g.hook().log.lock().unwrap().clone()
}

fn waiting(g: &Gated) -> usize {
    g.hook().counters.waiting.load(Ordering::SeqCst)
}

/// Waits until `n` calls wait at the gate (yielding: the test runtime is single-threaded).
async fn until_waiting(g: &Gated, n: usize) {
    while waiting(g) < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn directory_work_is_bounded_by_max_in_flight() {
    let (gated, users) = gated_lab(10);
    let run = Arc::new(
        Remediation::builder()
            .directory(gated.clone())
            .flusher(Arc::new(RecordingFlusher::new()))
            .users(users)
            .disable()
            .reset_password(NewPassword::Generate)
            .accounts_in_flight(3)
            .timeouts(exch_remediate::Timeouts::default().with_directory(Duration::from_secs(3600)))
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
        until_waiting(&gated, 3.min(10 - released)).await;
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(waiting(&gated), 3.min(10 - released));
        gated.hook().permits.add_permits(1);
    }
    let report = task.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(gated.hook().counters.max.load(Ordering::SeqCst), 3);
    // Default mode: one combined change per account (10 calls, each sending both changes).
    let seen = seen(&gated);
    let count = |x: Seen| seen.iter().filter(|s| **s == x).count();
    assert_eq!(count(Seen::Entered), 10, "{seen:?}");
    assert_eq!(
        count(Seen::Sends(Operation::DisableAccount)),
        10,
        "{seen:?}"
    );
    assert_eq!(count(Seen::Sends(Operation::ResetPassword)), 10, "{seen:?}");
}

#[tokio::test]
async fn contain_first_disables_every_account_before_any_reset() {
    let (gated, users) = gated_lab(6);
    let run = Arc::new(
        Remediation::builder()
            .directory(gated.clone())
            .flusher(Arc::new(RecordingFlusher::new()))
            .users(users.clone())
            .disable()
            .reset_password(NewPassword::Generate)
            .accounts_in_flight(2)
            .contain_first()
            .timeouts(exch_remediate::Timeouts::default().with_directory(Duration::from_secs(3600)))
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
        until_waiting(&gated, 2.min(6 - released)).await;
        let seen = seen(&gated);
        assert!(
            !seen.contains(&Seen::Sends(Operation::ResetPassword)),
            "{seen:?}"
        );
        gated.hook().permits.add_permits(1);
    }
    // Phase 2: the resets.
    until_waiting(&gated, 2).await;
    gated.hook().permits.add_permits(6);
    let report = task.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(gated.hook().counters.max.load(Ordering::SeqCst), 2);

    // Every disable returned before the first reset was sent; disable-only, then reset-only:
    // 12 calls, each sending one change.
    let seen = seen(&gated);
    let count = |x: Seen| seen.iter().filter(|s| **s == x).count();
    assert_eq!(count(Seen::Entered), 12, "{seen:?}");
    assert_eq!(count(Seen::Sends(Operation::DisableAccount)), 6, "{seen:?}");
    assert_eq!(count(Seen::Sends(Operation::ResetPassword)), 6, "{seen:?}");
    let sixth_return = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == Seen::Returned)
        .nth(5)
        .unwrap()
        .0;
    let first_reset = seen
        .iter()
        .position(|s| *s == Seen::Sends(Operation::ResetPassword))
        .unwrap();
    assert!(sixth_return < first_reset, "{seen:?}");
    assert_eq!(gated.inner().calls(Operation::DisableAccount), 6);
    assert_eq!(gated.inner().calls(Operation::ResetPassword), 6);

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
        assert!(account(gated.inner(), &u.user).is_disabled());
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
