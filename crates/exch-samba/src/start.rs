//! Finding or starting the shared DC.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{AdEnv, SambaAd, SambaError, AD_ENV_VAR, NO_START_VAR};

/// `Ok(Ok(ad))`: a DC; `Ok(Err(reason))`: none available (skip); `Err`: configured but broken.
pub(crate) fn locate() -> Result<Result<SambaAd, String>, SambaError> {
    if let Ok(path) = std::env::var(AD_ENV_VAR) {
        if !path.trim().is_empty() {
            let ad = SambaAd::from_env_file(Path::new(path.trim()))?;
            if !port_open(&ad.env.url_ldaps) {
                return Err(SambaError::new(format!(
                    "{AD_ENV_VAR}={path} names {}, but nothing answers there; is the DC running? (scripts/samba-ad.sh start DIR)",
                    ad.env.url_ldaps
                )));
            }
            return Ok(Ok(ad));
        }
    }
    if std::env::var(NO_START_VAR).is_ok_and(|v| v == "1") {
        return Ok(Err(format!(
            "{NO_START_VAR}=1 forbids starting one and {AD_ENV_VAR} is not set"
        )));
    }
    if find_program("samba").is_none() {
        return Ok(Err(format!(
            "`samba` is not installed and {AD_ENV_VAR} is not set; scripts/samba-ad.sh installs and starts it"
        )));
    }
    if !is_root() {
        return Ok(Err(format!(
            "not running as root (Samba needs ports 389/636) and {AD_ENV_VAR} is not set"
        )));
    }
    start_own().map(Ok)
}

pub(crate) fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Starts (or reuses) `target/samba-ad-auto`, under a file lock shared by all test binaries.
fn start_own() -> Result<SambaAd, SambaError> {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join("samba-ad-auto");
    std::fs::create_dir_all(&target)
        .map_err(|e| SambaError::new(format!("cannot create {}: {e}", target.display())))?;
    let lock_path = target.join("samba-ad-auto.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| SambaError::new(format!("cannot create {}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| SambaError::new(format!("cannot lock {}: {e}", lock_path.display())))?;
    let env_file = dir.join("ad.env");
    if let Ok(env) = AdEnv::from_file(&env_file) {
        let pid_alive = std::fs::read_to_string(dir.join("samba.pid"))
            .ok()
            .is_some_and(|p| Path::new("/proc").join(p.trim()).exists());
        if pid_alive && port_open(&env.url_ldaps) {
            tracing::info!(dir = %dir.display(), "reusing the Samba AD DC started by an earlier test binary");
            return Ok(SambaAd {
                env,
                origin: format!("{} (started by the harness earlier)", env_file.display()),
            });
        }
    }
    let ip = (1..=9)
        .map(|n| format!("127.0.0.{n}"))
        .find(|ip| {
            !port_open(&format!("ldaps://{ip}:636")) && !port_open(&format!("ldap://{ip}:389"))
        })
        .ok_or_else(|| SambaError::new("ports 389/636 are taken on 127.0.0.1 … 127.0.0.9"))?;
    let script = root.join("scripts/samba-ad.sh");
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&dir)
        .arg(&ip)
        .output()
        .map_err(|e| SambaError::new(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(SambaError::new(format!(
            "{} start {} {ip} failed ({}):\n{}",
            script.display(),
            dir.display(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    tracing::info!(dir = %dir.display(), %ip, secs = t0.elapsed().as_secs_f64(), "started Samba AD DC");
    eprintln!(
        "exch-samba: started Samba AD on {ip} in {:.1} s ({}); stop it with scripts/samba-ad.sh stop {}",
        t0.elapsed().as_secs_f64(),
        dir.display(),
        dir.display()
    );
    let env = AdEnv::from_file(&env_file)?;
    Ok(SambaAd {
        env,
        origin: format!("{} (started by the harness)", env_file.display()),
    })
}

/// Whether something accepts TCP connections at the host:port of an LDAP URL.
pub(crate) fn port_open(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or_default();
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else if url.starts_with("ldaps") {
        format!("{hostport}:636")
    } else {
        format!("{hostport}:389")
    };
    let Ok(addr) = hostport.parse::<SocketAddr>() else {
        use std::net::ToSocketAddrs;
        return hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
    };
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}
