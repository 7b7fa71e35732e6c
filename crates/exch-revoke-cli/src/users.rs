//! The users of a job: repeated `--user`, and `--users-file` (one user per line, `#`
//! comments, blank lines). Every user is parsed with [`exch_directory::UserRef::parse`] before
//! anything is contacted; every bad one is named (with its file and line) at once.

use std::path::{Path, PathBuf};

use exch_directory::UserRef;

use crate::error::CliError;

/// Where a user came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSource {
    /// The n-th `--user` (1-based).
    Flag(usize),
    /// A line of a users file.
    Line(PathBuf, usize),
}

impl std::fmt::Display for UserSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserSource::Flag(n) => write!(f, "--user (#{n})"),
            UserSource::Line(file, line) => write!(f, "{}:{line}", file.display()),
        }
    }
}

/// The most problems listed in one error (the rest are counted).
const MAX_LISTED: usize = 20;

/// A short, printable form of a user as typed (control characters escaped, long input cut).
pub fn printable(user: &str) -> String {
    let mut s: String = user.chars().take(80).flat_map(char::escape_debug).collect();
    if user.chars().count() > 80 {
        s.push('…');
    }
    s
}

/// Reads the users of `--user` and `--users-file`, in that order, and checks each one.
/// Duplicates (the same text twice) are refused as well: the second one names the first.
pub fn collect(
    flags: &[String],
    file: Option<&Path>,
) -> Result<Vec<(String, UserSource)>, CliError> {
    let mut users: Vec<(String, UserSource)> = flags
        .iter()
        .enumerate()
        .map(|(i, u)| (u.clone(), UserSource::Flag(i + 1)))
        .collect();
    if let Some(path) = file {
        let bytes = std::fs::read(path).map_err(|e| {
            CliError::bad_input(
                format!("--users-file {}", path.display()),
                format!("cannot read it: {e}"),
                "give a readable text file, one user per line",
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            CliError::at_line(
                path,
                line,
                "not UTF-8 text",
                "save the file as UTF-8 (one user per line)",
            )
        })?;
        users.extend(
            parse_lines(&text)
                .map(|(n, u)| (u.to_owned(), UserSource::Line(path.to_path_buf(), n))),
        );
    }
    if users.is_empty() {
        return Err(match file {
            Some(path) => CliError::bad_input(
                format!("--users-file {}", path.display()),
                "holds no user (only blank lines and # comments)",
                "put one user per line: bob@corp.example, CORP\\bob, bob or a DN",
            ),
            None => CliError::bad_input(
                "--user",
                "no user given",
                "pass --user USER (repeatable) or --users-file FILE",
            ),
        });
    }
    check(&users)?;
    Ok(users)
}

/// The non-blank, non-comment lines of a users file with their 1-based numbers; surrounding
/// whitespace (and a `\r`) trimmed. A `#` starts a comment only at the start of a line (a
/// user name may contain `#`).
pub fn parse_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn check(users: &[(String, UserSource)]) -> Result<(), CliError> {
    let mut problems: Vec<(String, String)> = Vec::new();
    for (i, (user, source)) in users.iter().enumerate() {
        if let Err(e) = UserRef::parse(user) {
            problems.push((
                source.to_string(),
                format!("\"{}\": {}", printable(user), reason(&e)),
            ));
            continue;
        }
        if let Some((_, first)) = users[..i]
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(user))
        {
            problems.push((
                source.to_string(),
                format!("\"{}\" is listed twice (first at {first})", printable(user)),
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let total = problems.len();
    if total == 1 {
        let (input, problem) = problems.remove(0);
        return Err(CliError::bad_input(input, problem, FIX));
    }
    let mut text = format!("{total} users are not valid:");
    for (input, problem) in problems.iter().take(MAX_LISTED) {
        text.push_str(&format!("\n  {input}: {problem}"));
    }
    if total > MAX_LISTED {
        text.push_str(&format!("\n  … and {} more", total - MAX_LISTED));
    }
    Err(CliError::bad_input("users", text, FIX))
}

const FIX: &str = "correct or remove these users (a user is bob@corp.example, CORP\\bob, bob or a DN); nothing was contacted or changed";

fn reason(e: &exch_directory::DirectoryError) -> String {
    match e {
        exch_directory::DirectoryError::InvalidInput { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_numbers() {
        let lines: Vec<_> =
            parse_lines("# incident 42\n\nalice@corp.example\r\n  CORP\\bob  \n#carol\ndave#1\n")
                .collect();
        assert_eq!(
            lines,
            [(3, "alice@corp.example"), (4, "CORP\\bob"), (6, "dave#1")]
        );
    }

    #[test]
    fn bad_users_are_named_with_file_and_line() {
        let dir = std::env::temp_dir().join(format!("exch-revoke-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users.txt");
        std::fs::write(
            &file,
            "alice@corp.example\n\nbob)(|(cn=*\nnul\0byte\nALICE@corp.example\n",
        )
        .unwrap();
        let err = collect(&[], Some(&file)).unwrap_err().to_string();
        assert!(err.contains("3 users are not valid"), "{err}");
        assert!(err.contains("users.txt:3: \"bob)(|(cn=*\""), "{err}");
        assert!(err.contains("users.txt:4: \"nul\\0byte\""), "{err}");
        assert!(
            err.contains("users.txt:5: \"ALICE@corp.example\" is listed twice (first at"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_bad_flag_user_names_the_flag() {
        let e = collect(&["bob".into(), "a\0b".into()], None).unwrap_err();
        assert_eq!(e.input(), Some("--user (#2)"));
        assert_eq!(e.exit(), crate::exit::Exit::BadInput);
    }
}
