//! `revoke`, `plan` and `resume`: one job runner on [`exch_remediate::RevokeMany`] (one user
//! is a batch of one).
//!
//! Order of a run, each step durable before the next: validate every input (nothing
//! contacted) → fetch the service passwords → plan (reads only) → write the journal (it names
//! each password file) → store every new password (0600 file or the admin's command) → execute
//! (each event folded into the journal before it is shown) → final journal, `--json`, tables.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use exch_remediate::{
    Action, Cause, ManyPlan, ManyReport, NewPassword, RemediationError, RevokeMany,
};
use secrecy::SecretString;

use crate::error::CliError;
use crate::exit::Exit;
use crate::journal::{self, Earlier, Job, Journal};
use crate::output::{write_json_file, Out};
use crate::passwords::{self, OldPasswords, PasswordSink};
use crate::progress::{self, pause_if_asked};
use crate::render;
use crate::settings::Settings;
use crate::users::{self, UserSource};

/// The environment variable of the old password for `--probe` of one user (default).
pub const OLD_PASSWORD_ENV: &str = "EXCH_REVOKE_OLD_PASSWORD";

/// Who and what: shared by `revoke` and `plan`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Users and actions")]
pub struct TargetArgs {
    /// A user to revoke (repeatable): bob@corp.example, CORP\bob, bob or a DN.
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// A file of users: one per line; lines starting with # and blank lines are ignored.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Disable the accounts.
    #[arg(long)]
    pub disable: bool,
    /// Reset the passwords to new generated ones, stored (--passwords-dir or
    /// --password-command) before any reset is sent.
    #[arg(long)]
    pub reset_password: bool,
    /// With --disable and --reset-password: disable every account before resetting any
    /// password (the batch is contained sooner).
    #[arg(long)]
    pub contain_first: bool,
    /// Revoke the users that resolve; report the ones that do not (unknown, ambiguous,
    /// listed twice) instead of refusing the whole batch.
    #[arg(long)]
    pub skip_unresolved: bool,
    /// After the flush, log on with each user's OLD password on every server and require a
    /// refusal (old passwords from --old-password-command, or for one user from
    /// EXCH_REVOKE_OLD_PASSWORD or a prompt).
    #[arg(long)]
    pub probe: bool,
    /// Command that prints a user's old password (the user in EXCH_REVOKE_USER); run once
    /// per user.
    #[arg(long, value_name = "CMD", requires = "probe")]
    pub old_password_command: Option<String>,
    /// Environment variable holding the old password (one user; default
    /// EXCH_REVOKE_OLD_PASSWORD).
    #[arg(
        long,
        value_name = "VAR",
        requires = "probe",
        conflicts_with = "old_password_command"
    )]
    pub old_password_env: Option<String>,
    /// Mailbox containment: refuse every protocol of each mailbox (OWA, EWS, ActiveSync,
    /// MAPI, Outlook Anywhere, POP, IMAP, ECP) and block every device, through the Exchange
    /// Management Shell of one Exchange 2013+ server; closes Kerberos tickets and
    /// Windows-authenticated connections that a flush does not.
    #[arg(long)]
    pub lockdown: bool,
    /// Send a remote wipe to every device of each mailbox before it is blocked:
    /// account-only (default; Exchange 2016+) or full.
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_missing_value = "account-only")]
    pub wipe_devices: Option<WipeArg>,
    /// Remove each mailbox's forwarding and disable (default) or remove the inbox rules that
    /// forward, redirect or delete; they are always reported.
    #[arg(long, value_name = "RULES", num_args = 0..=1, default_missing_value = "disable")]
    pub remove_forwarding: Option<RulesArg>,
}

/// `--wipe-devices` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WipeArg {
    /// Only the Exchange account's data (Exchange 2016 and later).
    AccountOnly,
    /// The whole device.
    Full,
}

/// `--remove-forwarding` rule actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesArg {
    /// Disable-InboxRule: the rule stays, as evidence.
    Disable,
    /// Remove-InboxRule.
    Remove,
}

/// Where new passwords go: shared by `revoke` and `resume`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "New passwords")]
pub struct PasswordArgs {
    /// Write each new password to its own file (mode 0600) in this directory (created with
    /// mode 0700), before the reset is sent.
    #[arg(long, value_name = "DIR", conflicts_with = "password_command")]
    pub passwords_dir: Option<PathBuf>,
    /// Hand each new password to this command on its stdin (the user in EXCH_REVOKE_USER),
    /// one run per user, before the reset is sent; e.g. 'vault kv put secret/revoked/$EXCH_REVOKE_USER password=-'.
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,
}

impl PasswordArgs {
    fn sink(&self) -> Option<PasswordSink> {
        match (&self.passwords_dir, &self.password_command) {
            (Some(d), _) => Some(PasswordSink::Dir(d.clone())),
            (None, Some(c)) => Some(PasswordSink::Command(c.clone())),
            (None, None) => None,
        }
    }
}

/// The run's records: shared by `revoke` and `resume`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Records")]
pub struct RecordArgs {
    /// Crash safety: record the job and its progress here (rewritten atomically after every
    /// step); after a crash, `exch-revoke resume FILE` finishes the job.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Write the report (JSON, no secret) here; `exch-revoke resume FILE` accepts it too.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn check_output_file(path: &Path, flag: &str) -> Result<(), CliError> {
    let dir = crate::fsutil::parent_dir(path);
    if !dir.is_dir() {
        return Err(CliError::bad_input(
            format!("{flag} {}", path.display()),
            format!("the directory {} does not exist", dir.display()),
            "create it first, or name a file in an existing directory",
        ));
    }
    if path.is_dir() {
        return Err(CliError::bad_input(
            format!("{flag} {}", path.display()),
            "is a directory",
            "name a file",
        ));
    }
    Ok(())
}

fn old_passwords(t: &TargetArgs, n_users: usize) -> Result<Option<OldPasswords>, CliError> {
    if !t.probe {
        return Ok(None);
    }
    if let Some(c) = &t.old_password_command {
        return Ok(Some(OldPasswords::Command(c.clone())));
    }
    if n_users > 1 {
        return Err(CliError::bad_input(
            "--probe",
            format!("{n_users} users need {n_users} old passwords"),
            "pass --old-password-command CMD (it prints the old password of the user in EXCH_REVOKE_USER)",
        ));
    }
    Ok(Some(OldPasswords::Env(
        t.old_password_env
            .clone()
            .unwrap_or_else(|| OLD_PASSWORD_ENV.to_owned()),
    )))
}

/// The job of `revoke`/`plan` flags, checked without contacting anything: every user
/// parsed, the actions, where passwords go, where old passwords come from.
pub fn job_from_args(
    t: &TargetArgs,
    p: &PasswordArgs,
    needs_passwords: bool,
) -> Result<(Job, HashMap<String, UserSource>), CliError> {
    let entries = users::collect(&t.users, t.users_file.as_deref())?;
    if !t.disable && !t.reset_password {
        return Err(CliError::bad_input(
            "actions",
            "nothing to do",
            "pass --disable and/or --reset-password (both, for a compromised account)",
        ));
    }
    if t.contain_first && !(t.disable && t.reset_password) {
        return Err(CliError::bad_input(
            "--contain-first",
            "needs both --disable and --reset-password (it disables every account before resetting any password)",
            "add the missing action, or drop --contain-first",
        ));
    }
    let sink = p.sink();
    if needs_passwords && t.reset_password && sink.is_none() {
        return Err(CliError::bad_input(
            "--reset-password",
            "each new password must be stored before its reset is sent",
            "pass --passwords-dir DIR (one 0600 file per user) or --password-command CMD (e.g. your vault's CLI, reading stdin)",
        ));
    }
    if !t.reset_password && sink.is_some() {
        return Err(CliError::bad_input(
            if p.passwords_dir.is_some() {
                "--passwords-dir"
            } else {
                "--password-command"
            },
            "given without --reset-password: no password is generated",
            "add --reset-password, or drop it",
        ));
    }
    // `plan` probes nothing: where old passwords come from matters only to `revoke`.
    let probe = if needs_passwords {
        old_passwords(t, entries.len())?
    } else {
        None
    };
    let sources = entries.iter().cloned().collect();
    let job = Job {
        users: entries.into_iter().map(|(u, _)| u).collect(),
        disable: t.disable,
        reset_password: t.reset_password,
        contain_first: t.contain_first,
        skip_unresolved: t.skip_unresolved,
        passwords: sink,
        probe,
        mailbox: mailbox_actions(t),
    };
    Ok((job, sources))
}

/// The mailbox containment the flags ask for.
fn mailbox_actions(t: &TargetArgs) -> exch_remediate::MailboxActions {
    let mut a = exch_remediate::MailboxActions::default();
    if t.lockdown {
        a = a.with_lockdown();
    }
    if let Some(w) = t.wipe_devices {
        a = a.with_wipe(match w {
            WipeArg::AccountOnly => exch_mailbox::WipeMode::AccountOnly,
            WipeArg::Full => exch_mailbox::WipeMode::Full,
        });
    }
    if let Some(r) = t.remove_forwarding {
        a = a.with_forwarding_removed(match r {
            RulesArg::Disable => exch_mailbox::RuleAction::Disable,
            RulesArg::Remove => exch_mailbox::RuleAction::Remove,
        });
    }
    a
}

/// A job about to run: what, from where, with which records.
#[derive(Debug)]
pub struct Prepared {
    /// The job.
    pub job: Job,
    /// Where each user came from (for messages).
    pub sources: HashMap<String, UserSource>,
    /// Progress of earlier runs (resume).
    pub earlier: Option<Earlier>,
    /// Where the earlier progress was read from.
    pub earlier_file: Option<PathBuf>,
    /// The journal to write.
    pub journal: Option<PathBuf>,
    /// The report to write.
    pub json: Option<PathBuf>,
}

fn unresolved_error(
    problems: &[(String, exch_remediate::UserProblem)],
    total: usize,
    sources: &HashMap<String, UserSource>,
) -> CliError {
    let mut text = format!(
        "{} of {total} users cannot be resolved in the directory:",
        problems.len()
    );
    for (user, problem) in problems.iter().take(20) {
        let at = sources
            .get(user)
            .map(|s| format!("{s}: "))
            .unwrap_or_default();
        text.push_str(&format!(
            "\n  {at}\"{}\": {problem}",
            users::printable(user)
        ));
    }
    if problems.len() > 20 {
        text.push_str(&format!("\n  … and {} more", problems.len() - 20));
    }
    CliError::bad_input(
        "users",
        text,
        "nothing was changed; correct or remove these users, or pass --skip-unresolved to revoke the others",
    )
}

/// The backends and the built run.
struct Built {
    run: RevokeMany,
    notes: Vec<String>,
    flusher: std::sync::Arc<exch_iis::WinRmFlusher>,
}

/// Builds the run: connects to the DC (bind), prepares WinRM (and the prober).
async fn build(
    settings: &Settings,
    job: &Job,
    earlier: Option<&Earlier>,
    given: Vec<(String, SecretString)>,
    olds: Vec<(String, SecretString)>,
    events: Option<tokio::sync::mpsc::UnboundedSender<exch_remediate::Event>>,
    plan_only: bool,
) -> Result<Built, CliError> {
    let flusher = settings.flusher()?;
    let directory = settings.directory().await?;
    let mut notes = settings.security_notes(Some(&flusher), Some(&directory));
    let r = &settings.run;
    let mut b = RevokeMany::builder()
        .directory(directory)
        .flusher(flusher.clone())
        .users(job.users.iter().cloned())
        .strategy(r.strategy)
        .timeouts(r.timeouts);
    if job.disable {
        b = b.disable();
    }
    if job.reset_password {
        b = b.reset_password(NewPassword::Generate);
    }
    for (u, p) in given {
        b = b.user_password(u, p);
    }
    if job.contain_first {
        b = b.contain_first();
    }
    if job.mailbox.changes_anything() {
        // The mailbox step runs over the same WinRM transport and sessions as the flush.
        b = b
            .mailbox(std::sync::Arc::new(exch_mailbox::WinRmMailbox::new(
                (*flusher).clone(),
            )))
            .mailbox_actions(job.mailbox);
    }
    if job.skip_unresolved || plan_only {
        b = b.skip_unresolved();
    }
    if let Some(d) = r.deadline {
        b = b.deadline(d);
    }
    if let Some(n) = r.accounts_in_flight {
        b = b.accounts_in_flight(n);
    }
    if let Some(m) = &r.method {
        b = b.method(m.clone());
    }
    for s in &r.include {
        b = b.include_server(s);
    }
    for s in &r.exclude {
        b = b.exclude_server(s);
    }
    for s in &r.sites {
        b = b.site(s);
    }
    if !olds.is_empty() {
        let prober = settings.prober()?;
        notes.extend(exch_remediate::Prober::security_notes(prober.as_ref()));
        b = b.probe_old_passwords(prober, olds);
    }
    match earlier {
        Some(Earlier::Journal(j)) => b = b.resume_many(j.report.clone()),
        Some(Earlier::Many(m)) => b = b.resume_many((**m).clone()),
        Some(Earlier::One(o)) => b = b.resume((**o).clone()),
        None => {}
    }
    if let Some(tx) = events {
        b = b.events(tx);
    }
    let run = b
        .build_many()
        .map_err(|e| CliError::bad_input("job", e.to_string(), "check the flags"))?;
    Ok(Built {
        run,
        notes,
        flusher,
    })
}

async fn plan_of(
    run: &RevokeMany,
    sources: &HashMap<String, UserSource>,
) -> Result<ManyPlan, CliError> {
    run.plan().await.map_err(|e| match e {
        RemediationError::UnresolvedUsers { total, problems } => {
            unresolved_error(&problems, total, sources)
        }
        other => CliError::failed(
            None,
            format!("planning failed: {other}"),
            Some("check the connection settings with `exch-revoke profile check`".into()),
        ),
    })
}

/// `exch-revoke plan`: the dry run. Reads only; every user listed, resolved or not.
pub async fn plan(
    settings: &Settings,
    t: &TargetArgs,
    json: bool,
    out: &Out,
) -> Result<Exit, CliError> {
    let (job, sources) = job_from_args(t, &PasswordArgs::default(), false)?;
    settings.fetch_secrets()?;
    let built = build(settings, &job, None, Vec::new(), Vec::new(), None, true).await?;
    let plan = plan_of(&built.run, &sources).await?;
    let unresolved = plan.users.len() - plan.resolved().count();
    if json {
        out.json(&plan)?;
    } else {
        render::plan(out, &plan);
        for note in &built.notes {
            out.line(format!("SECURITY: {note}"));
        }
    }
    if unresolved > 0 && !job.skip_unresolved {
        let problems: Vec<(String, exch_remediate::UserProblem)> = plan
            .users
            .iter()
            .filter_map(|u| u.problem.clone().map(|p| (u.user.clone(), p)))
            .collect();
        let e = unresolved_error(&problems, plan.users.len(), &sources)
            .with_fix("a revoke of this list would change nothing and stop here: correct or remove these users, or pass --skip-unresolved");
        out.error(&e);
        return Ok(Exit::BadInput);
    }
    Ok(Exit::Revoked)
}

/// `exch-revoke revoke`.
pub async fn revoke(
    settings: &Settings,
    t: &TargetArgs,
    p: &PasswordArgs,
    rec: &RecordArgs,
    out: &Out,
) -> Result<Exit, CliError> {
    let (job, sources) = job_from_args(t, p, true)?;
    if let Some(j) = &rec.journal {
        check_output_file(j, "--journal")?;
        if j.exists() {
            return Err(CliError::bad_input(
                format!("--journal {}", j.display()),
                "exists: it records an earlier job",
                format!(
                    "finish that job with `exch-revoke resume {}`, or name a new journal file",
                    j.display()
                ),
            ));
        }
    }
    if let Some(f) = &rec.json {
        check_output_file(f, "--json")?;
    }
    if let Some(PasswordSink::Dir(d)) = &job.passwords {
        passwords::prepare_dir(d)?;
    }
    execute(
        settings,
        Prepared {
            job,
            sources,
            earlier: None,
            earlier_file: None,
            journal: rec.journal.clone(),
            json: rec.json.clone(),
        },
        out,
    )
    .await
}

/// Options of `exch-revoke resume`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResumeArgs {
    /// The journal (--journal) or the report (--json) of the run to finish.
    #[arg(value_name = "JOURNAL_OR_REPORT")]
    pub from: PathBuf,
    /// Where new passwords go, when a reset is still to be done (default: as the journal says).
    #[command(flatten)]
    pub passwords: PasswordArgs,
    /// Command that prints a user's old password for the probes (default: as the journal says).
    #[arg(long, value_name = "CMD")]
    pub old_password_command: Option<String>,
    /// Records of this run. A journal is continued in place unless --journal names another file.
    #[command(flatten)]
    pub records: RecordArgs,
}

/// The job a report implies: its users and the actions it recorded.
fn job_of_report(users: Vec<String>, actions: &[Action], skip_unresolved: bool) -> Job {
    Job {
        users,
        disable: actions.contains(&Action::Disable),
        reset_password: actions.contains(&Action::ResetPassword),
        contain_first: false,
        skip_unresolved,
        passwords: None,
        probe: None,
        mailbox: exch_remediate::MailboxActions::default(),
    }
}

/// `exch-revoke resume`.
pub async fn resume(settings: &Settings, a: &ResumeArgs, out: &Out) -> Result<Exit, CliError> {
    let earlier = journal::load(&a.from)?;
    let from = a.from.display().to_string();
    let (mut job, journal_path) = match &earlier {
        Earlier::Journal(j) => (
            j.job.clone(),
            Some(a.records.journal.clone().unwrap_or_else(|| a.from.clone())),
        ),
        Earlier::Many(m) => {
            let actions: Vec<Action> = m
                .users
                .iter()
                .flat_map(|u| u.actions.iter().map(|x| x.action))
                .collect();
            let unresolved = m.users.iter().any(|u| {
                u.causes
                    .iter()
                    .any(|c| matches!(c, Cause::Unresolved { .. }))
            });
            (
                job_of_report(
                    m.users.iter().map(|u| u.user.clone()).collect(),
                    &actions,
                    unresolved,
                ),
                a.records.journal.clone(),
            )
        }
        Earlier::One(o) => {
            let actions: Vec<Action> = o.actions.iter().map(|x| x.action).collect();
            (
                job_of_report(vec![o.user.clone()], &actions, false),
                a.records.journal.clone(),
            )
        }
    };
    if !job.disable && !job.reset_password {
        return Err(CliError::bad_input(
            from,
            "records no directory action, so there is nothing to resume",
            "run `exch-revoke revoke` again with the users and actions",
        ));
    }
    if let Some(sink) = a.passwords.sink() {
        job.passwords = Some(sink);
    }
    if let Some(c) = &a.old_password_command {
        job.probe = Some(OldPasswords::Command(c.clone()));
    }
    if job.reset_password && job.passwords.is_none() {
        let done = |u: &String| match &earlier {
            Earlier::Journal(j) => journal::reset_applied(&j.report, u),
            Earlier::Many(m) => journal::reset_applied(m, u),
            Earlier::One(o) => o.actions.iter().any(|x| {
                x.action == Action::ResetPassword && (x.outcome.is_some() || x.done_earlier)
            }),
        };
        let left: Vec<&String> = job.users.iter().filter(|u| !done(u)).collect();
        if !left.is_empty() {
            return Err(CliError::bad_input(
                from,
                format!("{} user(s) still need a password reset (first: \"{}\") and the report does not say where new passwords go", left.len(), users::printable(left[0])),
                "pass --passwords-dir DIR or --password-command CMD",
            ));
        }
    }
    if let Some(j) = &journal_path {
        check_output_file(j, "--journal")?;
        if j != &a.from && j.exists() {
            return Err(CliError::bad_input(
                format!("--journal {}", j.display()),
                "exists",
                "name a new file, or leave --journal out to continue the journal you resume",
            ));
        }
    }
    if let Some(f) = &a.records.json {
        check_output_file(f, "--json")?;
    }
    if let Some(PasswordSink::Dir(d)) = &job.passwords {
        passwords::prepare_dir(d)?;
    }
    if let Earlier::Journal(j) = &earlier {
        if j.finished {
            out.note(format!(
                "{}: that run finished ({:?}); running it again changes only what is left",
                a.from.display(),
                j.report.outcome
            ));
        }
    }
    execute(
        settings,
        Prepared {
            sources: HashMap::new(),
            job,
            earlier: Some(earlier),
            earlier_file: Some(a.from.clone()),
            journal: journal_path,
            json: a.records.json.clone(),
        },
        out,
    )
    .await
}

/// The progress a new journal starts from: the earlier run's (so what it did stays recorded
/// if this run is killed too), marked interrupted, every user of the plan present.
fn journal_base(plan: &ManyPlan, earlier: Option<&Earlier>) -> ManyReport {
    let mut base = ManyReport::journal(plan);
    match earlier {
        Some(Earlier::Journal(j)) => carry(&mut base, &j.report),
        Some(Earlier::Many(m)) => carry(&mut base, m),
        Some(Earlier::One(o)) => {
            if let Some(u) = base.users.iter_mut().find(|u| u.user == o.user) {
                u.actions = o.actions.clone();
            }
            base.servers = o.servers.clone();
        }
        None => {}
    }
    base
}

fn carry(base: &mut ManyReport, earlier: &ManyReport) {
    for u in &mut base.users {
        if let Some(e) = earlier.user(&u.user) {
            u.actions = e.actions.clone();
        }
    }
    base.servers = earlier.servers.clone();
}

/// Runs a prepared job to its end (see the module docs for the order).
pub async fn execute(settings: &Settings, mut p: Prepared, out: &Out) -> Result<Exit, CliError> {
    let job = p.job.clone();
    // Old passwords for the probes, before anything is contacted.
    let mut olds = Vec::new();
    if let Some(src) = &job.probe {
        for u in &job.users {
            olds.push((u.clone(), src.get(u)?));
        }
    }
    settings.fetch_secrets()?;

    // Passwords an interrupted run of this job stored in files: reused, never replaced.
    let mut given: Vec<(String, SecretString)> = Vec::new();
    let mut files: std::collections::BTreeMap<String, PathBuf> = Default::default();
    let mut handed: Vec<String> = Vec::new();
    if let Some(Earlier::Journal(j)) = &mut p.earlier {
        handed = j.passwords_handed.clone();
        if let Some(PasswordSink::Dir(_)) = &job.passwords {
            for (user, file) in j.password_files.clone() {
                let applied = journal::reset_applied(&j.report, &user);
                match passwords::read_stored(&file)? {
                    Some(pw) if !applied => {
                        out.note(format!(
                            "continuing an interrupted job: the new password of {} is the one stored in {} (kept, not replaced)",
                            users::printable(&user),
                            file.display()
                        ));
                        given.push((user.clone(), pw));
                        files.insert(user, file);
                    }
                    Some(_) => {
                        files.insert(user, file);
                    }
                    None if applied => {
                        // The reset was applied with a password whose file is gone: nobody
                        // holds it. Reset again, with a new password stored first.
                        out.warn(format!(
                            "{} was reset by an earlier run but its password file {} is missing or empty: a new password is generated, stored there first, then set",
                            users::printable(&user),
                            file.display()
                        ));
                        if let Some(u) = j.report.users.iter_mut().find(|u| u.user == user) {
                            u.actions.retain(|a| a.action != Action::ResetPassword);
                        }
                        let _ = std::fs::remove_file(&file);
                        files.insert(user, file);
                    }
                    None => {
                        if file.exists() {
                            std::fs::remove_file(&file).map_err(|e| {
                                CliError::io(&file, "remove the empty password file", &e)
                            })?;
                        }
                        out.note(format!(
                            "the journal names {} for {} but it is missing or empty: the reset was never sent with it; a new password is generated and stored there first",
                            file.display(),
                            users::printable(&user)
                        ));
                        files.insert(user, file);
                    }
                }
            }
        }
    }
    let given_users: HashSet<String> = given.iter().map(|(u, _)| u.clone()).collect();

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let built = build(
        settings,
        &job,
        p.earlier.as_ref(),
        given,
        olds,
        Some(tx),
        false,
    )
    .await?;
    let run = built.run;
    let plan = plan_of(&run, &p.sources).await?;
    for u in plan.users.iter() {
        if let Some(problem) = &u.problem {
            let at = p
                .sources
                .get(&u.user)
                .map(|s| format!("{s}: "))
                .unwrap_or_default();
            out.warn(format!(
                "{at}{}: NOT revoked: {problem}",
                users::printable(&u.user)
            ));
        }
    }
    for note in &built.notes {
        out.security(note);
    }
    out.line(render::plan_line(&plan));
    for s in plan.servers.iter().filter(|s| s.is_flushed()) {
        out.note(format!(
            "WinRM {}: {}",
            s.server.name,
            built.flusher.method_for(&s.server)
        ));
    }

    // Which new passwords to store, and where.
    let resolved: HashSet<&str> = plan.resolved().map(|u| u.user.as_str()).collect();
    let to_store: Vec<(String, SecretString)> = run
        .new_passwords()
        .filter(|(u, _)| resolved.contains(u) && !given_users.contains(*u))
        .map(|(u, pw)| (u.to_owned(), pw.clone()))
        .collect();
    if let Some(PasswordSink::Dir(dir)) = &job.passwords {
        let mut taken: HashSet<String> = files
            .values()
            .filter_map(|f| {
                f.file_name()
                    .map(|n| n.to_string_lossy().to_ascii_lowercase())
            })
            .collect();
        for (u, _) in &to_store {
            if !files.contains_key(u) {
                let name = passwords::file_name(u, &mut taken);
                files.insert(u.clone(), dir.join(name));
            }
        }
    }

    // The journal names every password file before any is written.
    let mut journal = p.journal.clone().map(|path| {
        let mut j = Journal::new(job.clone(), journal_base(&plan, p.earlier.as_ref()));
        j.password_files = files.clone();
        j.passwords_handed = handed.clone();
        (path, j)
    });
    if let Some((path, j)) = &journal {
        j.save(path)?;
    }
    pause_if_asked("journal-written").await;

    for (user, pw) in &to_store {
        match &job.passwords {
            Some(PasswordSink::Dir(_)) => {
                let Some(file) = files.get(user) else {
                    continue;
                };
                passwords::write_private(file, pw)?;
                out.note(format!(
                    "new password of {} written to {} (mode 0600) before the reset",
                    users::printable(user),
                    file.display()
                ));
                out.progress_json(
                    &serde_json::json!({ "event": "password_written", "user": user, "file": file }),
                );
            }
            Some(PasswordSink::Command(cmd)) => {
                passwords::hand_to_command(cmd, user, pw)?;
                if let Some((path, j)) = &mut journal {
                    if !j.passwords_handed.contains(user) {
                        j.passwords_handed.push(user.clone());
                    }
                    j.save(path)?;
                }
                out.note(format!(
                    "new password of {} handed to the password command before the reset",
                    users::printable(user)
                ));
                out.progress_json(&serde_json::json!({ "event": "password_written", "user": user, "command": true }));
            }
            None => {
                return Err(CliError::bad_input(
                    "--reset-password",
                    "no place to store the new passwords",
                    "pass --passwords-dir DIR or --password-command CMD",
                ));
            }
        }
    }
    pause_if_asked("password-written").await;

    // Execute, folding every event into the journal; Ctrl-C cancels (what has not started is
    // skipped and reported), a second Ctrl-C ends the process at once.
    let consumer = tokio::spawn(progress::consume(rx, out.clone(), plan.clone(), journal));
    let cancel = run.cancellation();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("interrupted: finishing what is in flight (Ctrl-C again to stop at once; the journal lets `resume` finish)");
        cancel.cancel();
        wait_for_signal().await;
        std::process::exit(i32::from(Exit::Interrupted.code()));
    });
    let report = run.execute(&plan).await;
    drop(run); // closes the event channel
    let journal = consumer.await.ok().flatten();
    signals.abort();

    if let Some((path, mut j)) = journal {
        j.report = report.clone();
        j.finished = true;
        j.save(&path)?;
    }
    if let Some(f) = &p.json {
        write_json_file(f, &report)?;
    }
    render::report(out, &report);
    if let Some(f) = &p.json {
        out.line(format!("report written to {}", f.display()));
    }
    let exit = if report.cancelled {
        Exit::Interrupted
    } else {
        Exit::from(report.outcome)
    };
    let unresolved = |u: &exch_remediate::UserRecord| {
        u.causes
            .iter()
            .any(|c| matches!(c, Cause::Unresolved { .. }))
    };
    let resumable = !report.servers_to_retry.is_empty()
        || report
            .users
            .iter()
            .any(|u| u.outcome != exch_remediate::Outcome::Revoked && !unresolved(u));
    if exit != Exit::Revoked && resumable {
        let from = p
            .journal
            .as_ref()
            .or(p.json.as_ref())
            .or(p.earlier_file.as_ref());
        match from {
            Some(f) => out.line(format!("to finish: exch-revoke resume {} (with the same profile and flags)", f.display())),
            None => out.line("to finish: run again with --journal FILE (or --json FILE) so that `exch-revoke resume` can continue"),
        }
    }
    if report.users.iter().any(unresolved) {
        out.line("users not resolved: nothing was done for them; correct their names and revoke them in a new run");
    }
    Ok(exit)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
