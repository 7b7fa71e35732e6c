//! New passwords: stored **before** the reset is sent, each in its own 0600 file in a 0700
//! directory (`--passwords-dir`), or handed to a command the admin names
//! (`--password-command`, the password on its stdin, the user in `EXCH_REVOKE_USER`). Old
//! passwords for the probes come from a command (`--old-password-command`) or, for one user,
//! an environment variable or a prompt.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::fsutil;
use crate::settings::{run_secret_command, shell_command};

/// The environment variable that names the user for `--password-command` and
/// `--old-password-command`.
pub const USER_ENV: &str = "EXCH_REVOKE_USER";

/// Where generated passwords go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSink {
    /// One 0600 file per user in this 0700 directory.
    Dir(PathBuf),
    /// This command, run once per user: the password on stdin, the user in `EXCH_REVOKE_USER`.
    Command(String),
}

impl std::fmt::Display for PasswordSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSink::Dir(d) => write!(f, "files in {}", d.display()),
            PasswordSink::Command(c) => write!(f, "the command `{c}`"),
        }
    }
}

/// Creates `dir` with mode 0700 if it does not exist; refuses one that others can read.
pub fn prepare_dir(dir: &Path) -> Result<(), CliError> {
    let flag = format!("--passwords-dir {}", dir.display());
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(CliError::bad_input(
                flag,
                "is not a directory",
                "name a directory (it is created, mode 0700, if missing)",
            ))
        }
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(CliError::bad_input(
                        flag,
                        format!("others can read it (mode {mode:o}); new passwords must be readable by you only"),
                        format!("chmod 700 {}", dir.display()),
                    ));
                }
            }
            #[cfg(not(unix))]
            let _ = m;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir).map_err(|e| {
                CliError::bad_input(
                    flag.clone(),
                    format!("cannot create it: {e}"),
                    "name a directory you can create",
                )
            })?;
            fsutil::sync_dir(&fsutil::parent_dir(dir))
                .map_err(|e| CliError::io(dir, "sync its parent", &e))?;
        }
        Err(e) => {
            return Err(CliError::bad_input(
                flag,
                format!("cannot read it: {e}"),
                "name a directory you can write",
            ))
        }
    }
    Ok(())
}

/// A file name for `user`'s password, unique among `taken` (case-insensitively: some file
/// systems are): letters, digits and `._@-` kept, anything else `_`, `.password` appended.
pub fn file_name(user: &str, taken: &mut HashSet<String>) -> String {
    let base: String = user
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = base.trim_start_matches('.').to_owned();
    let base = if base.is_empty() {
        "user".to_owned()
    } else {
        base
    };
    let mut name = format!("{base}.password");
    let mut n = 2;
    while !taken.insert(name.to_ascii_lowercase()) {
        name = format!("{base}-{n}.password");
        n += 1;
    }
    name
}

/// Creates `path` (it must not exist) with mode 0600, writes `secret`, and makes file and
/// directory entry durable (fsync both) before returning.
pub fn write_private(path: &Path, secret: &SecretString) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| {
        CliError::failed(
            Some(path.display().to_string()),
            format!("cannot create the password file: {e}"),
            Some("a password file left by an earlier run was never sent to the directory unless its journal says so: resume that run (`exch-revoke resume JOURNAL`), or move the file away".into()),
        )
    })?;
    f.write_all(secret.expose_secret().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::io(path, "write the password file", &e))?;
    fsutil::sync_dir(&fsutil::parent_dir(path))
        .map_err(|e| CliError::io(path, "sync its directory", &e))
}

/// Reads a password file an earlier run wrote; `Ok(None)` when it is missing or empty.
pub fn read_stored(path: &Path) -> Result<Option<SecretString>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.is_empty() => Ok(Some(SecretString::from(s))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::io(path, "read the stored password", &e)),
    }
}

/// Runs `cmd` with `secret` on its stdin and `user` in `EXCH_REVOKE_USER`; its stdout is
/// discarded (it might echo), its stderr shown. Fails unless it exits with 0.
pub fn hand_to_command(cmd: &str, user: &str, secret: &SecretString) -> Result<(), CliError> {
    let what = format!("--password-command for {user}");
    let mut child = shell_command(cmd)
        .env(USER_ENV, user)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CliError::failed(Some(what.clone()), format!("cannot run `{cmd}`: {e}"), None)
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut line = secret.expose_secret().as_bytes().to_vec();
        line.push(b'\n');
        let written = stdin.write_all(&line);
        drop(stdin);
        if let Err(e) = written {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CliError::failed(
                Some(what),
                format!("cannot give the password to `{cmd}`: {e}"),
                None,
            ));
        }
    }
    let status = child
        .wait()
        .map_err(|e| CliError::failed(Some(what.clone()), format!("`{cmd}` failed: {e}"), None))?;
    if !status.success() {
        return Err(CliError::failed(
            Some(what),
            format!("`{cmd}` failed ({status}); the password was not stored, so no reset is sent"),
            Some("run the command by hand (the password on stdin, the user in EXCH_REVOKE_USER) to see why".into()),
        ));
    }
    Ok(())
}

/// Where the old passwords for `--probe` come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OldPasswords {
    /// A command run per user (the user in `EXCH_REVOKE_USER`) that prints the old password.
    Command(String),
    /// One user only: this environment variable, else a prompt on a terminal.
    Env(String),
}

impl OldPasswords {
    /// The old password of `user`.
    pub fn get(&self, user: &str) -> Result<SecretString, CliError> {
        match self {
            OldPasswords::Command(cmd) => run_secret_command(
                cmd,
                &format!("--old-password-command for {user}"),
                &[(USER_ENV, user)],
            ),
            OldPasswords::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                _ => {
                    crate::settings::prompt(&format!("OLD password of {user} (for the probe)"), var)
                }
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_unique() {
        let mut taken = HashSet::new();
        assert_eq!(
            file_name("bob@corp.example", &mut taken),
            "bob@corp.example.password"
        );
        assert_eq!(file_name("CORP\\bob", &mut taken), "CORP_bob.password");
        assert_eq!(file_name("corp/bob", &mut taken), "corp_bob-2.password");
        assert_eq!(
            file_name("../../etc/passwd", &mut taken),
            "_.._etc_passwd.password"
        );
        assert_eq!(
            file_name("CN=Bob,CN=Users", &mut taken),
            "CN_Bob_CN_Users.password"
        );
    }

    #[cfg(unix)]
    #[test]
    fn dir_0700_file_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir()
            .join(format!("exch-revoke-pw-{}", std::process::id()))
            .join("pw");
        prepare_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let f = dir.join("a.password");
        write_private(&f, &SecretString::from("x-1")).unwrap();
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_private(&f, &SecretString::from("x-2")).is_err());
        assert_eq!(read_stored(&f).unwrap().unwrap().expose_secret(), "x-1");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_dir(&dir).unwrap_err();
        assert!(e.fix().unwrap().starts_with("chmod 700"), "{e}");
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn a_command_gets_the_password_on_stdin_and_the_user_in_the_environment() {
        let dir = std::env::temp_dir().join(format!("exch-revoke-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("got");
        let cmd = format!(
            "cat > '{}'; echo \"$EXCH_REVOKE_USER\" >> '{}'",
            out.display(),
            out.display()
        );
        hand_to_command(&cmd, "bob@corp.example", &SecretString::from("S3cret!")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "S3cret!\nbob@corp.example\n"
        );
        assert!(hand_to_command("exit 3", "bob", &SecretString::from("x")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
