//! Lab time: a UTC clock that can run faster than real time, or be advanced by hand.
//!
//! Token-cache lifetimes (`UserTokenTTL`) are measured on this clock, so a 900 s TTL can be
//! exercised in a fraction of a real second without changing what "expired" means. Latencies
//! that a *client* observes (recycle latency, `iisreset` window, slow WinRM answers) are real
//! durations and are not scaled: they interact with real client timeouts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

/// A shareable lab clock. Clones share the same time line.
///
/// `now() = origin + real elapsed × scale + manual advances`.
///
/// ```
/// # use exch_lab::clock::LabClock;
/// # use std::time::Duration;
/// let clock = LabClock::frozen();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(900));
/// assert_eq!((clock.now() - t0).num_seconds(), 900);
/// ```
#[derive(Clone)]
pub struct LabClock {
    inner: Arc<Inner>,
}

struct Inner {
    origin_real: Instant,
    origin_lab: DateTime<Utc>,
    scale: f64,
    advanced: Mutex<TimeDelta>,
}

impl std::fmt::Debug for LabClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabClock")
            .field("scale", &self.inner.scale)
            .field("now", &self.now())
            .finish()
    }
}

impl Default for LabClock {
    fn default() -> Self {
        LabClock::real()
    }
}

impl LabClock {
    /// Real time (scale 1).
    pub fn real() -> Self {
        LabClock::scaled(1.0)
    }

    /// Lab time runs `scale` times faster than real time: with `scale = 1000.0`, one real
    /// millisecond is one lab second. A negative or non-finite scale is treated as 0 (frozen).
    pub fn scaled(scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            0.0
        };
        LabClock {
            inner: Arc::new(Inner {
                origin_real: Instant::now(),
                origin_lab: Utc::now(),
                scale,
                advanced: Mutex::new(TimeDelta::zero()),
            }),
        }
    }

    /// A clock that only moves when [`LabClock::advance`] is called (deterministic tests).
    pub fn frozen() -> Self {
        LabClock::scaled(0.0)
    }

    /// How many lab seconds pass per real second (0 = frozen).
    pub fn scale(&self) -> f64 {
        self.inner.scale
    }

    /// The lab's current time.
    pub fn now(&self) -> DateTime<Utc> {
        let real = self.inner.origin_real.elapsed();
        let scaled_nanos = (real.as_nanos() as f64 * self.inner.scale).min(i64::MAX as f64) as i64;
        let advanced = *lock(&self.inner.advanced);
        self.inner.origin_lab + TimeDelta::nanoseconds(scaled_nanos) + advanced
    }

    /// Moves lab time forward by `by` (on top of the scaled real time).
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        let mut advanced = lock(&self.inner.advanced);
        *advanced = advanced.checked_add(&by).unwrap_or(TimeDelta::MAX);
    }

    /// The real time it takes for `lab` to pass on this clock; `None` when frozen.
    pub fn real_duration(&self, lab: Duration) -> Option<Duration> {
        if self.inner.scale == 0.0 {
            None
        } else {
            Some(lab.div_f64(self.inner.scale))
        }
    }
}

/// Locks a std mutex, recovering the data of a poisoned one (the lab never leaves state half
/// updated across a panic that matters).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_runs_faster() {
        let clock = LabClock::scaled(1000.0);
        let t0 = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let lab = clock.now() - t0;
        assert!(lab.num_seconds() >= 19, "{lab}");
        assert_eq!(
            clock.real_duration(Duration::from_secs(900)),
            Some(Duration::from_millis(900))
        );
    }

    #[test]
    fn frozen_clock_moves_only_when_advanced() {
        let clock = LabClock::frozen();
        let t0 = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), t0);
        clock.clone().advance(Duration::from_secs(3));
        assert_eq!((clock.now() - t0).num_seconds(), 3);
        assert_eq!(clock.real_duration(Duration::from_secs(1)), None);
    }
}
