//! Two Samba AD DCs of one domain with real DRS replication (`scripts/samba-ad-pair.sh`).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::start::{port_open, workspace_root};
use crate::{record_skip, AdEnv, SambaAd, SambaError, NO_START_VAR, REQUIRE_VAR};

/// Environment variable naming the `pair.env` of a running pair (written by
/// `scripts/samba-ad-pair.sh start DIR`); without it the harness starts one into
/// `target/samba-ad-pair` (root, `samba` installed, [`NO_START_VAR`] not `1`).
pub const AD_PAIR_ENV_VAR: &str = "EXCH_REVOKE_AD_PAIR_ENV";

/// The notify interval the harness keeps the shared pair at (`dreplsrv:notify_interval`,
/// seconds): DC1 tells DC2 about a change within about a second.
pub const SHARED_NOTIFY_INTERVAL: u32 = 1;

/// One of the two DCs of a [`SambaPair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DcId {
    /// The first DC (provisioned; 127.0.0.5 by default). Writes go here.
    Dc1,
    /// The second DC (joined to DC1; 127.0.0.6 by default).
    Dc2,
}

impl DcId {
    fn number(self) -> u8 {
        match self {
            DcId::Dc1 => 1,
            DcId::Dc2 => 2,
        }
    }
}

/// What the harness knows about one DC of the pair.
#[derive(Debug)]
pub struct PairDc {
    /// The `cn` of its server object (`DC1`, `DC2`), as `Directory::domain_controllers` names it.
    pub name: String,
    /// Its loopback address.
    pub ip: String,
    /// `ldaps://dc<N>.<dns domain>:636`: the name in its server object's `dNSHostName`
    /// (resolved by an `/etc/hosts` line the script added; its certificate names it).
    pub url: String,
    /// Its `smb.conf`.
    pub smb_conf: PathBuf,
    /// Administrator operations and plain binds on **this** DC only (`env().url_ldaps` is
    /// `ldaps://<ip>:636`): what this DC shows, independent of the code under test.
    pub ad: SambaAd,
}

/// Two running Samba AD DCs of one domain (`EXP.EXAMPLE.TEST` by default), DC2 joined to DC1,
/// replicating both ways; shared by the tests of one run like [`SambaAd::shared`].
#[derive(Debug)]
pub struct SambaPair {
    dir: PathBuf,
    env_file: PathBuf,
    dc1: PairDc,
    dc2: PairDc,
    origin: String,
    serial: tokio::sync::Mutex<()>,
}

/// Exclusive use of a [`SambaPair`] ([`SambaPair::exclusive`]).
#[derive(Debug)]
pub struct PairGuard<'a> {
    pair: &'a SambaPair,
    _serial: tokio::sync::MutexGuard<'a, ()>,
}

impl Drop for PairGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Err(e) = self.pair.restore() {
                eprintln!("exch-samba: could not restore the pair after a failed test: {e}");
            }
        }
    }
}

static SHARED_PAIR: OnceLock<Result<Result<SambaPair, String>, SambaError>> = OnceLock::new();

fn vars_of(path: &Path) -> Result<HashMap<String, String>, SambaError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SambaError::new(format!(
            "cannot read {} ({e}); start a pair with scripts/samba-ad-pair.sh start DIR and point {AD_PAIR_ENV_VAR} at DIR/pair.env",
            path.display()
        ))
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

impl SambaPair {
    /// The shared pair: from [`AD_PAIR_ENV_VAR`], or started once by this harness into
    /// `target/samba-ad-pair` (reused by later test binaries; a file lock serialises the
    /// start). Either way it is brought back to the shared state first ([`Self::restore`]).
    /// `Ok(None)` when neither is possible; [`Self::unavailable_reason`] says why.
    pub fn shared() -> Result<Option<&'static SambaPair>, SambaError> {
        match SHARED_PAIR.get_or_init(locate) {
            Ok(Ok(p)) => Ok(Some(p)),
            Ok(Err(_)) => Ok(None),
            Err(e) => Err(e.clone()),
        }
    }

    /// Why [`Self::shared`] found no pair, if it did not.
    pub fn unavailable_reason() -> Option<String> {
        match SHARED_PAIR.get_or_init(locate) {
            Ok(Err(reason)) => Some(reason.clone()),
            Err(e) => Some(e.to_string()),
            Ok(Ok(_)) => None,
        }
    }

    /// For test suites: the shared pair, or `None` after recording the skip
    /// ([`record_skip`]).
    ///
    /// # Panics
    /// When `EXCH_REVOKE_REQUIRE_SAMBA=1` and no pair is available, and whenever
    /// [`Self::shared`] fails.
    pub fn require(suite: &str) -> Option<&'static SambaPair> {
        match Self::shared() {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                let reason = Self::unavailable_reason().unwrap_or_default();
                if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                    panic!("{suite}: two Samba AD DCs are required ({REQUIRE_VAR}=1) but not available: {reason}");
                }
                record_skip(&format!(
                    "{suite}: two Samba AD DCs not available ({reason}); run scripts/test.sh to run it"
                ));
                None
            }
            Err(e) => panic!("{suite}: {e}"),
        }
    }

    /// A pair described by a `pair.env` file (no sharing, no start).
    pub fn from_env_file(path: &Path) -> Result<SambaPair, SambaError> {
        let vars = vars_of(path)?;
        let get = |k: &str| {
            vars.get(k).cloned().ok_or_else(|| {
                SambaError::new(format!(
                    "{} has no {k}; is it a pair.env of scripts/samba-ad-pair.sh?",
                    path.display()
                ))
            })
        };
        let base = AdEnv::from_file(path)?;
        let dc = |n: u8| -> Result<PairDc, SambaError> {
            let ip = get(&format!("AD_DC{n}_IP"))?;
            let mut env = base.clone();
            env.url_ldaps = format!("ldaps://{ip}:636");
            env.url_ldap = format!("ldap://{ip}:389");
            env.kdc = Some(format!("{ip}:88"));
            Ok(PairDc {
                name: get(&format!("AD_DC{n}_NAME"))?,
                url: get(&format!("AD_DC{n}_URL"))?,
                smb_conf: PathBuf::from(get(&format!("AD_DC{n}_SMBCONF"))?),
                ad: SambaAd {
                    env,
                    origin: format!("DC{n} of {}", path.display()),
                },
                ip,
            })
        };
        Ok(SambaPair {
            dir: PathBuf::from(get("AD_PAIR_DIR")?),
            env_file: path.to_owned(),
            dc1: dc(1)?,
            dc2: dc(2)?,
            origin: path.display().to_string(),
            serial: tokio::sync::Mutex::new(()),
        })
    }

    /// One DC.
    pub fn dc(&self, dc: DcId) -> &PairDc {
        match dc {
            DcId::Dc1 => &self.dc1,
            DcId::Dc2 => &self.dc2,
        }
    }

    /// The domain's values (`env().url_ldaps` is DC1 by address; the CA signed both DCs'
    /// certificates).
    pub fn env(&self) -> &AdEnv {
        self.dc1.ad.env()
    }

    /// The pair's state directory (`dc1/`, `dc2/`, `krb5.conf`, `pair.env`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the pair came from (`pair.env` path).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Serialises the tests that change the pair's state (stop a DC, pause replication, …)
    /// with every other test of the process that uses it: hold the guard for the whole test.
    /// (Test binaries run one after another; tests of one binary run in parallel.) When the
    /// test panics, dropping the guard brings the pair back ([`Self::restore`]) for the next.
    pub async fn exclusive(&self) -> PairGuard<'_> {
        PairGuard {
            pair: self,
            _serial: self.serial.lock().await,
        }
    }

    /// Whether the DC's recorded process is alive.
    pub fn is_running(&self, dc: DcId) -> bool {
        let pid = self
            .dir
            .join(format!("dc{}", dc.number()))
            .join("samba.pid");
        std::fs::read_to_string(pid)
            .ok()
            .is_some_and(|p| Path::new("/proc").join(p.trim()).exists())
    }

    /// `dreplsrv:notify_interval` of both DCs: `Some(seconds)`, or `None` for Samba's default
    /// (5 s).
    pub fn notify_interval(&self) -> Result<Option<u32>, SambaError> {
        let vars = vars_of(&self.env_file)?;
        Ok(vars
            .get("AD_NOTIFY_INTERVAL")
            .and_then(|v| v.parse::<u32>().ok()))
    }

    /// Stops the DC (TERM to its recorded PID); the other keeps running. Blocking.
    pub fn stop_dc(&self, dc: DcId) -> Result<Duration, SambaError> {
        self.script(&["stop-dc", &dc.number().to_string()])
    }

    /// Starts the DC again and waits until it answers LDAPS. Blocking.
    pub fn start_dc(&self, dc: DcId) -> Result<Duration, SambaError> {
        self.script(&["start-dc", &dc.number().to_string()])
    }

    /// Makes DC2 pull the domain partition from DC1 now (`samba-tool drs replicate`); the
    /// change is visible on DC2 when this returns. Blocking.
    pub fn replicate_now(&self) -> Result<Duration, SambaError> {
        self.script(&["replicate", "2"])
    }

    /// Allows (`true`) or pauses (`false`) inbound replication of `dc`: the `nTDSDSA` option
    /// `DISABLE_INBOUND_REPL` (`repadmin /options <DC> +DISABLE_INBOUND_REPL`). The DC keeps
    /// answering LDAP with what it has. Blocking.
    pub fn set_inbound_replication(&self, dc: DcId, on: bool) -> Result<Duration, SambaError> {
        self.script(&[
            "inbound",
            &dc.number().to_string(),
            if on { "on" } else { "off" },
        ])
    }

    /// Sets `dreplsrv:notify_interval` on both DCs (`None`: Samba's default, 5 s) and
    /// restarts them (about 1–2 s). Blocking.
    pub fn set_notify_interval(&self, seconds: Option<u32>) -> Result<Duration, SambaError> {
        let v = seconds.map_or_else(|| "default".to_owned(), |s| s.to_string());
        self.script(&["notify", &v])
    }

    /// Runs one of the blocking operations above (`|p| p.replicate_now()`, …) on tokio's
    /// blocking pool, for async tests.
    ///
    /// # Panics
    /// When the operation fails or panics.
    pub async fn blocking<T: Send + 'static>(
        &'static self,
        op: impl FnOnce(&'static SambaPair) -> Result<T, SambaError> + Send + 'static,
    ) -> T {
        tokio::task::spawn_blocking(move || op(self))
            .await
            .expect("join")
            .expect("pair script")
    }

    /// Back to the shared state: both DCs running, inbound replication on for both, notify
    /// interval [`SHARED_NOTIFY_INTERVAL`]. Blocking; cheap when nothing is to do (a test that
    /// panicked midway leaves the next one a working pair).
    pub fn restore(&self) -> Result<(), SambaError> {
        if self.notify_interval()? != Some(SHARED_NOTIFY_INTERVAL) {
            self.set_notify_interval(Some(SHARED_NOTIFY_INTERVAL))?;
        }
        for dc in [DcId::Dc1, DcId::Dc2] {
            if !self.is_running(dc) {
                self.start_dc(dc)?;
            }
        }
        for dc in [DcId::Dc1, DcId::Dc2] {
            self.set_inbound_replication(dc, true)?;
        }
        Ok(())
    }

    fn script(&self, args: &[&str]) -> Result<Duration, SambaError> {
        let script = workspace_root().join("scripts/samba-ad-pair.sh");
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(&script)
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .output()
            .map_err(|e| SambaError::new(format!("cannot run {}: {e}", script.display())))?;
        if !out.status.success() {
            return Err(SambaError::new(format!(
                "{} {} {} {} failed ({}): {}",
                script.display(),
                args[0],
                self.dir.display(),
                args[1..].join(" "),
                out.status,
                tail(&out.stderr)
            )));
        }
        Ok(t0.elapsed())
    }
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().rev().take(15).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn locate() -> Result<Result<SambaPair, String>, SambaError> {
    let pair = if let Some(path) = std::env::var(AD_PAIR_ENV_VAR)
        .ok()
        .filter(|p| !p.trim().is_empty())
    {
        let pair = SambaPair::from_env_file(Path::new(path.trim()))?;
        if !port_open(&pair.dc1.ad.env().url_ldaps) {
            return Err(SambaError::new(format!(
                "{AD_PAIR_ENV_VAR}={path} names DC1 at {}, but nothing answers there; is the pair running? (scripts/samba-ad-pair.sh start DIR)",
                pair.dc1.ad.env().url_ldaps
            )));
        }
        pair
    } else {
        if std::env::var(NO_START_VAR).is_ok_and(|v| v == "1") {
            return Ok(Err(format!(
                "{NO_START_VAR}=1 forbids starting one and {AD_PAIR_ENV_VAR} is not set"
            )));
        }
        if let Some(reason) = cannot_start() {
            return Ok(Err(format!("{reason} and {AD_PAIR_ENV_VAR} is not set")));
        }
        start_own()?
    };
    pair.restore()?;
    Ok(Ok(pair))
}

/// Why this process cannot start a pair, if it cannot.
fn cannot_start() -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let samba = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join("samba").is_file());
    if !samba {
        return Some("`samba` is not installed (scripts/samba-ad.sh installs it)".into());
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false);
    if !root {
        return Some(
            "not running as root (the pair adds loopback addresses and /etc/hosts lines)".into(),
        );
    }
    None
}

/// Starts (or reuses) `target/samba-ad-pair`, under a file lock shared by all test binaries.
fn start_own() -> Result<SambaPair, SambaError> {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join("samba-ad-pair");
    std::fs::create_dir_all(&target)
        .map_err(|e| SambaError::new(format!("cannot create {}: {e}", target.display())))?;
    let lock_path = target.join("samba-ad-pair.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| SambaError::new(format!("cannot create {}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| SambaError::new(format!("cannot lock {}: {e}", lock_path.display())))?;
    let env_file = dir.join("pair.env");
    if let Ok(pair) = SambaPair::from_env_file(&env_file) {
        if pair.is_running(DcId::Dc1) && port_open(&pair.dc1.ad.env().url_ldaps) {
            tracing::info!(dir = %dir.display(), "reusing the Samba AD pair started earlier");
            return Ok(SambaPair {
                origin: format!("{} (started by the harness earlier)", env_file.display()),
                ..pair
            });
        }
    }
    let script = root.join("scripts/samba-ad-pair.sh");
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&dir)
        .output()
        .map_err(|e| SambaError::new(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(SambaError::new(format!(
            "{} start {} failed ({}):\n{}",
            script.display(),
            dir.display(),
            out.status,
            tail(&out.stderr)
        )));
    }
    eprintln!(
        "exch-samba: started two Samba AD DCs in {:.1} s ({}); stop them with scripts/samba-ad-pair.sh stop {}",
        t0.elapsed().as_secs_f64(),
        dir.display(),
        dir.display()
    );
    let pair = SambaPair::from_env_file(&env_file)?;
    Ok(SambaPair {
        origin: format!("{} (started by the harness)", env_file.display()),
        ..pair
    })
}
