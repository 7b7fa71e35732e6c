//! A worker process (w3wp): its logon-token cache and what it cached of the logon users'
//! mailboxes (their CAS settings and devices).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::clock::lock;
use crate::mailbox::Mailbox;

/// Windows process ids are multiples of 4; the lab hands them out fleet-wide, never twice.
static NEXT_PID: AtomicU32 = AtomicU32::new(4_000);

fn next_pid() -> u32 {
    NEXT_PID.fetch_add(4, Ordering::Relaxed)
}

/// `UserTokenTTL` when the registry value is absent (IIS default).
pub const DEFAULT_TOKEN_TTL_SECS: u32 = 900;

/// What the token cache is keyed by: the user name as presented (case-folded, as Windows
/// compares it) and a SHA-256 of the password. The password itself is never stored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    user: String,
    password_sha256: [u8; 32],
}

impl CacheKey {
    pub(crate) fn new(user: &str, password: &SecretString) -> Self {
        let digest = Sha256::digest(password.expose_secret().as_bytes());
        CacheKey {
            user: user.to_lowercase(),
            password_sha256: digest.into(),
        }
    }
}

/// When a worker read a logon user's mailbox, and what it read (`None`: no mailbox).
type MailboxEntry = (DateTime<Utc>, Option<Arc<Mailbox>>);

/// One worker process of an application pool.
pub(crate) struct Worker {
    pub(crate) pid: u32,
    pub(crate) started: DateTime<Utc>,
    /// Lifetime of an unused cache entry; `None` = never expires (`UserTokenTTL` = 0).
    ttl: Option<TimeDelta>,
    cache: Mutex<HashMap<CacheKey, DateTime<Utc>>>,
    /// Case-folded logon user name → when the worker read the user's mailbox, and what it
    /// read (`None`: the user has no mailbox). Entries are not renewed by use.
    mailbox_cache: Mutex<HashMap<String, MailboxEntry>>,
    in_flight: AtomicUsize,
    /// Set when the worker is killed (forced `iisreset`, or past its pool's shutdown time
    /// limit while stopping): requests still running on it fail.
    terminated: watch::Sender<bool>,
}

impl Worker {
    /// A new worker; `token_ttl` is the registry value it read at start-up.
    pub(crate) fn start(now: DateTime<Utc>, token_ttl: Option<u32>) -> Arc<Worker> {
        let secs = token_ttl.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
        Arc::new(Worker {
            pid: next_pid(),
            started: now,
            ttl: (secs != 0).then(|| TimeDelta::seconds(i64::from(secs))),
            cache: Mutex::new(HashMap::new()),
            mailbox_cache: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            terminated: watch::Sender::new(false),
        })
    }

    /// Whether `key` holds a live token at `now`; a hit slides the entry's expiry.
    pub(crate) fn cache_hit(&self, key: &CacheKey, now: DateTime<Utc>) -> bool {
        let mut cache = lock(&self.cache);
        let Some(last_used) = cache.get_mut(key) else {
            return false;
        };
        if self.ttl.is_some_and(|ttl| now - *last_used >= ttl) {
            cache.remove(key);
            return false;
        }
        *last_used = now;
        true
    }

    /// Caches a successful logon.
    pub(crate) fn cache_insert(&self, key: CacheKey, now: DateTime<Utc>) {
        lock(&self.cache).insert(key, now);
    }

    /// The mailbox of logon user `user` as this worker knows it: from its cache when it read
    /// it less than `lifetime` ago, otherwise from `read` (and cached, unless `lifetime` is
    /// zero). The second value says whether it came from the cache.
    pub(crate) fn mailbox_settings(
        &self,
        user: &str,
        now: DateTime<Utc>,
        lifetime: TimeDelta,
        read: impl FnOnce() -> Option<Mailbox>,
    ) -> (Option<Arc<Mailbox>>, bool) {
        if lifetime <= TimeDelta::zero() {
            return (read().map(Arc::new), false);
        }
        let key = user.to_lowercase();
        let mut cache = lock(&self.mailbox_cache);
        if let Some((read_at, mailbox)) = cache.get(&key) {
            if now - *read_at < lifetime {
                return (mailbox.clone(), true);
            }
            cache.remove(&key);
        }
        let mailbox = read().map(Arc::new);
        cache.insert(key, (now, mailbox.clone()));
        (mailbox, false)
    }

    /// Number of cached tokens (expired ones included until they are next looked up).
    pub(crate) fn cached_tokens(&self) -> usize {
        lock(&self.cache).len()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn terminate(&self) {
        self.terminated.send_replace(true);
    }

    pub(crate) fn is_terminated(&self) -> bool {
        *self.terminated.borrow()
    }

    /// Watches for the kill.
    pub(crate) fn killed(&self) -> watch::Receiver<bool> {
        self.terminated.subscribe()
    }
}

/// A request running on a worker. Taken under the server's state lock, so a recycle either
/// happens before (the request goes to the new worker) or after (the old worker keeps running
/// until this is dropped).
pub(crate) struct InFlight {
    pub(crate) worker: Arc<Worker>,
}

impl InFlight {
    pub(crate) fn enter(worker: &Arc<Worker>) -> InFlight {
        worker.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight {
            worker: Arc::clone(worker),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.worker.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str, pw: &str) -> CacheKey {
        CacheKey::new(user, &SecretString::from(pw.to_owned()))
    }

    #[test]
    fn sliding_ttl() {
        let t0 = Utc::now();
        let w = Worker::start(t0, Some(10));
        w.cache_insert(key("Bob", "pw"), t0);
        assert!(w.cache_hit(&key("bob", "pw"), t0 + TimeDelta::seconds(9)));
        assert!(w.cache_hit(&key("bob", "pw"), t0 + TimeDelta::seconds(18)));
        assert!(!w.cache_hit(&key("bob", "other"), t0 + TimeDelta::seconds(18)));
        assert!(!w.cache_hit(&key("bob", "pw"), t0 + TimeDelta::seconds(28)));
        assert!(!w.cache_hit(&key("bob", "pw"), t0 + TimeDelta::seconds(29)));
    }

    #[test]
    fn mailbox_settings_are_cached_for_their_lifetime_without_renewal() {
        let t0 = Utc::now();
        let w = Worker::start(t0, None);
        let life = TimeDelta::seconds(900);
        let bob = || Some(Mailbox::new("bob", "bob@lab.example.test"));
        let (m, cached) = w.mailbox_settings("Bob", t0, life, bob);
        assert!(m.is_some() && !cached);
        let (m, cached) = w.mailbox_settings("BOB", t0 + TimeDelta::seconds(899), life, || None);
        assert!(
            m.is_some() && cached,
            "used within its lifetime, not renewed"
        );
        let (m, cached) = w.mailbox_settings("bob", t0 + TimeDelta::seconds(900), life, || None);
        assert!(
            m.is_none() && !cached,
            "read again once its lifetime has passed"
        );
        let (_, cached) = w.mailbox_settings("bob", t0, TimeDelta::zero(), bob);
        assert!(!cached);
        let (_, cached) = w.mailbox_settings("carol", t0, TimeDelta::zero(), bob);
        assert!(!cached, "a zero lifetime caches nothing");
        assert!(!w.mailbox_settings("carol", t0, life, || None).1);
        assert!(
            !Worker::start(t0, None)
                .mailbox_settings("bob", t0, life, || None)
                .1
        );
    }

    #[test]
    fn zero_ttl_never_expires_and_pids_are_unique() {
        let t0 = Utc::now();
        let w = Worker::start(t0, Some(0));
        w.cache_insert(key("bob", "pw"), t0);
        assert!(w.cache_hit(&key("bob", "pw"), t0 + TimeDelta::days(400)));
        let w2 = Worker::start(t0, None);
        assert_ne!(w.pid, w2.pid);
        assert_eq!(w2.ttl, Some(TimeDelta::seconds(900)));
    }
}
