//! The winrm-rs client of each endpoint: reused, and bounded.
//!
//! One client per endpoint (see `Inner::clients`), but not one per endpoint *forever*: at most
//! [`IDLE_CLIENTS`] clients that no operation is using are kept (least recently used go
//! first), so a 1,000-server flush holds neither 1,000 HTTP clients nor 1,000 idle keep-alive
//! connections to the end (measured: BENCHMARKS.md, "Scale").
//!
//! Building a client is cheap only because `client_for` tells reqwest that a plain `http://`
//! endpoint needs no certificate verification: otherwise reqwest 0.13 (rustls with the
//! platform verifier) reads and parses every system CA certificate for every client
//! (`SSL_CERT_FILE` and `SSL_CERT_DIR`, ~2 ms of CPU and a root store of ~300 trust anchors
//! each) — most of the client's CPU in a 200-server flush, profiled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use winrm_rs::{WinrmClient, WinrmError};

/// Most clients kept while no operation uses them.
pub(super) const IDLE_CLIENTS: usize = 64;

/// Why no client could be had.
pub(super) enum BuildError {
    /// winrm-rs refused the settings.
    Winrm(WinrmError),
    /// The cache lock was poisoned.
    Internal(String),
}

struct Entry {
    client: Arc<WinrmClient>,
    used: u64,
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Entry>,
    tick: u64,
}

/// Endpoint URL → client.
#[derive(Default)]
pub(super) struct ClientCache {
    state: Mutex<State>,
}

impl ClientCache {
    fn lookup(&self, key: &str) -> Result<Option<Arc<WinrmClient>>, BuildError> {
        let mut state = self.lock()?;
        state.tick += 1;
        let tick = state.tick;
        Ok(state.clients.get_mut(key).map(|e| {
            e.used = tick;
            Arc::clone(&e.client)
        }))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, BuildError> {
        self.state
            .lock()
            .map_err(|_| BuildError::Internal("client cache poisoned by an earlier panic".into()))
    }

    /// The client of `key`, built with `build` when there is none.
    pub(super) fn get_or_build(
        &self,
        key: &str,
        build: impl FnOnce() -> Result<WinrmClient, WinrmError>,
    ) -> Result<Arc<WinrmClient>, BuildError> {
        if let Some(c) = self.lookup(key)? {
            return Ok(c);
        }
        // Built outside the lock; another operation on the same endpoint may build one
        // meanwhile, and then the first one in the cache is used.
        let client = Arc::new(build().map_err(BuildError::Winrm)?);
        let mut state = self.lock()?;
        state.tick += 1;
        let tick = state.tick;
        let entry = state
            .clients
            .entry(key.to_owned())
            .or_insert(Entry { client, used: tick });
        entry.used = tick;
        let client = Arc::clone(&entry.client);
        evict_idle(&mut state.clients, IDLE_CLIENTS);
        Ok(client)
    }

    /// Clients held now (in use or idle).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.state.lock().map(|s| s.clients.len()).unwrap_or(0)
    }
}

/// Drops the least recently used clients that nobody holds until at most `keep` are idle.
/// A client in use stays (dropping the cache's copy would free nothing).
fn evict_idle(clients: &mut HashMap<String, Entry>, keep: usize) {
    let mut idle: Vec<(u64, String)> = clients
        .iter()
        .filter(|(_, e)| Arc::strong_count(&e.client) == 1)
        .map(|(k, e)| (e.used, k.clone()))
        .collect();
    if idle.len() <= keep {
        return;
    }
    idle.sort_unstable();
    let excess = idle.len() - keep;
    for (_, key) in idle.into_iter().take(excess) {
        clients.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use winrm_rs::{WinrmConfig, WinrmCredentials};

    fn build(port: u16) -> impl FnOnce() -> Result<WinrmClient, WinrmError> {
        move || {
            WinrmClient::new(
                WinrmConfig {
                    port,
                    // Plain HTTP: no CA store to load (as `client_for` does).
                    accept_invalid_certs: true,
                    ..WinrmConfig::default()
                },
                WinrmCredentials::new("u", "p", ""),
            )
        }
    }

    #[test]
    fn reuses_and_keeps_at_most_the_idle_limit() {
        let cache = ClientCache::default();
        let a = cache.get_or_build("a", build(1)).ok().unwrap();
        let again = cache.get_or_build("a", build(1)).ok().unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        // Held clients are never evicted; idle ones beyond the limit are.
        let mut held = Vec::new();
        for i in 0..IDLE_CLIENTS + 10 {
            let c = cache.get_or_build(&format!("h{i}"), build(2)).ok().unwrap();
            held.push(c);
        }
        assert_eq!(cache.len(), IDLE_CLIENTS + 11);
        drop((a, again, held));
        let _ = cache.get_or_build("last", build(3)).ok().unwrap();
        assert_eq!(cache.len(), IDLE_CLIENTS + 1, "64 idle + the one in use");
    }
}
