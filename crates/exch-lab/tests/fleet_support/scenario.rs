//! The seed scenario, written once and run against every directory backend.

use exch_directory::{Directory, UserRef};
use exch_lab::fleet::{Fleet, LabServer};
use secrecy::SecretString;

use super::{
    all_accepted, all_refused, auth_pools, every_protocol, forms_page, owa_logon, owa_mailbox,
    recycle_script, run_powershell, Seen,
};

/// Recycles the authenticating pools of every server through its WinRM endpoint and checks the
/// JSON the script prints (no error, a worker before), then — `Restart-WebAppPool` returns
/// before the recycle is done — waits until the lab's own model has finished every recycle
/// and checks that every pool has a new worker.
pub async fn recycle_everywhere(fleet: &Fleet) {
    for server in fleet.servers() {
        let report = recycle(fleet, server).await;
        for pool in report["pools"].as_array().unwrap() {
            assert!(pool["error"].is_null(), "{}: {pool}", server.name());
            let name = pool["name"].as_str().unwrap();
            let before = pool["before"][0]["pid"].as_u64();
            assert!(before.is_some(), "{pool}");
            assert!(
                server
                    .iis()
                    .recycled(name, std::time::Duration::from_secs(10))
                    .await,
                "{}: {name} did not finish recycling",
                server.name()
            );
            let now = server.iis().current_pid(name).map(u64::from);
            assert!(now.is_some() && now != before, "{pool} → {now:?}");
        }
    }
}

/// Runs the recycle script on one server; its JSON output.
pub async fn recycle(fleet: &Fleet, server: &LabServer) -> serde_json::Value {
    let pools = auth_pools(server);
    let out = run_powershell(fleet, server, &recycle_script(&pools))
        .await
        .unwrap_or_else(|e| panic!("WinRM to {}: {e}", server.name()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.exit_code,
        0,
        "{}: stderr {}",
        server.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn account(dir: &dyn Directory, user: &str) -> exch_directory::Account {
    dir.find_account(&UserRef::parse(user).unwrap())
        .await
        .unwrap()
}

/// Logs on everywhere (all accepted), returns one OWA/ECP `cadata` session per server.
async fn logon_everywhere(fleet: &Fleet, user: &str, password: &str) -> Vec<String> {
    let mut sessions = Vec::new();
    for server in fleet.servers() {
        let seen = every_protocol(server, user, password).await;
        assert!(all_accepted(&seen), "{}: {seen:?}", server.name());
        let (owa, session) = owa_logon(server, user, password).await;
        assert!(matches!(owa, Seen::Ok { .. }));
        let session = session.unwrap();
        let ecp = forms_page(server, "/ecp/", &session).await;
        assert!(matches!(ecp, Seen::Ok { .. }), "{}: {ecp:?}", server.name());
        sessions.push(session);
    }
    sessions
}

async fn still_in_from_cache(fleet: &Fleet, user: &str, password: &str, sessions: &[String]) {
    for (server, session) in fleet.servers().iter().zip(sessions) {
        let seen = every_protocol(server, user, password).await;
        assert!(all_accepted(&seen), "{}: {seen:?}", server.name());
        for (protocol, s) in &seen {
            if let Seen::Ok { token, .. } = s {
                if protocol != "owa" {
                    assert_eq!(token, "cache", "{} {protocol}", server.name());
                }
            }
        }
        assert!(matches!(
            owa_mailbox(server, session).await,
            Seen::Ok { .. }
        ));
        assert!(matches!(
            forms_page(server, "/ecp/", session).await,
            Seen::Ok { .. }
        ));
    }
}

/// Sessions and Basic logons survive a recycle while the account is enabled: cookie sessions
/// log on again from the `cadata` credentials on the new workers.
async fn sessions_survive_a_recycle(
    fleet: &Fleet,
    user: &str,
    password: &str,
    sessions: &[String],
) {
    recycle_everywhere(fleet).await;
    for (server, session) in fleet.servers().iter().zip(sessions) {
        for page in ["/owa/", "/ecp/"] {
            match forms_page(server, page, session).await {
                Seen::Ok { token, .. } => assert_eq!(token, "directory", "{page}"),
                other => panic!("{}{page}: {other:?}", server.name()),
            }
        }
        let seen = every_protocol(server, user, password).await;
        assert!(all_accepted(&seen), "{}: {seen:?}", server.name());
    }
}

async fn refused_everywhere(fleet: &Fleet, user: &str, password: &str, sessions: &[String]) {
    for (server, session) in fleet.servers().iter().zip(sessions) {
        let seen = every_protocol(server, user, password).await;
        assert!(all_refused(&seen), "{}: {seen:?}", server.name());
        // The sessions are refused by the directory (the logon page with reason=2), not lost.
        assert_eq!(owa_mailbox(server, session).await, Seen::Refused);
        assert_eq!(forms_page(server, "/ecp/", session).await, Seen::Refused);
        assert!(server.counters().iis.logons_refused > 0);
    }
}

/// Logon → disable → still in from the cache → recycle over WinRM → refused everywhere.
pub async fn disable_then_recycle(fleet: &Fleet, dir: &dyn Directory, user: &str, password: &str) {
    let sessions = logon_everywhere(fleet, user, password).await;
    sessions_survive_a_recycle(fleet, user, password, &sessions).await;
    // Back in the caches (the checks above logged on again).
    let acct = account(dir, user).await;
    dir.disable_account(&acct).await.unwrap();
    // The directory itself refuses the account now …
    let direct = dir
        .authenticate(user, &SecretString::from(password.to_owned()))
        .await
        .unwrap();
    assert!(!direct.is_success(), "{direct:?}");
    // … but every cached token still lets the user in.
    still_in_from_cache(fleet, user, password, &sessions).await;
    recycle_everywhere(fleet).await;
    refused_everywhere(fleet, user, password, &sessions).await;
}

/// Logon → password reset → old password still works from the cache, the new one from the
/// directory → recycle over WinRM → old password refused everywhere, new one accepted.
pub async fn reset_then_recycle(
    fleet: &Fleet,
    dir: &dyn Directory,
    user: &str,
    old: &str,
    new: &str,
) {
    let sessions = logon_everywhere(fleet, user, old).await;
    let acct = account(dir, user).await;
    dir.reset_password(&acct, &SecretString::from(new.to_owned()))
        .await
        .unwrap();
    still_in_from_cache(fleet, user, old, &sessions).await;
    recycle_everywhere(fleet).await;
    refused_everywhere(fleet, user, old, &sessions).await;
    for server in fleet.servers() {
        let seen = every_protocol(server, user, new).await;
        assert!(all_accepted(&seen), "{}: {seen:?}", server.name());
    }
}

/// The flush runs before the change (as when it does not wait for the domain controllers):
/// the sessions survive it, log on again with the still-valid account, and the disabled user
/// stays in from the caches afterwards — an OWA check that could not catch this proves nothing.
pub async fn recycle_before_disable_leaves_the_user_in(
    fleet: &Fleet,
    dir: &dyn Directory,
    user: &str,
    password: &str,
) {
    let sessions = logon_everywhere(fleet, user, password).await;
    recycle_everywhere(fleet).await;
    still_in_after_relogon(fleet, user, password, &sessions).await;
    let acct = account(dir, user).await;
    dir.disable_account(&acct).await.unwrap();
    still_in_from_cache(fleet, user, password, &sessions).await;
}

async fn still_in_after_relogon(fleet: &Fleet, user: &str, password: &str, sessions: &[String]) {
    for (server, session) in fleet.servers().iter().zip(sessions) {
        let seen = every_protocol(server, user, password).await;
        assert!(all_accepted(&seen), "{}: {seen:?}", server.name());
        for page in ["/owa/", "/ecp/"] {
            assert!(
                matches!(forms_page(server, page, session).await, Seen::Ok { .. }),
                "{}{page}",
                server.name()
            );
        }
    }
}
