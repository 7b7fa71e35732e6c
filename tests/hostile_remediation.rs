//! Hostile user identifiers through the orchestrator against the Samba AD DC: filter and DN
//! metacharacters, `*`, NUL, leading/trailing spaces, a 64 KiB string, extra backslashes, two
//! `@`, a Cyrillic look-alike of the target's name. Each one, given to
//! `Remediation::builder().user(..)` (disable + reset) and all of them together — the real
//! target included — to `RevokeMany`, is refused at `build()` or `plan()` with an error that
//! names it (an excerpt for long ones); nothing is flushed (`RecordingFlusher` records no
//! call) and no account changes (`userAccountControl`, `pwdLastSet`, `uSNChanged` of the
//! target, two decoys a naive filter would reach, Guest and krbtgt). Then a legitimate run
//! on the target succeeds and changes the target only.
//!
//! The Directory-level counterpart is `crates/exch-directory/tests/hostile_samba.rs`. Needs
//! Samba (`EXCH_REVOKE_AD_ENV`; skipped with a `SKIPPED:` line otherwise, failed when
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;

use common::secret;
use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::Directory;
use exch_iis::{FlushOperation, RecordingFlusher};
use exch_remediate::{NewPassword, Outcome, Remediation, RemediationBuilder, RemediationError};
use exch_samba::{AdUser, SambaAd};
use std::collections::BTreeMap;
use std::sync::Arc;

const OLD_PW: &str = "Hostile-Old-Pw!r5";
const ATTRS: [&str; 3] = ["userAccountControl", "pwdLastSet", "uSNChanged"];

/// dn → the values of [`ATTRS`].
type Snapshot = BTreeMap<String, Vec<Option<String>>>;

async fn snapshot(ad: &SambaAd, dns: &[String]) -> Snapshot {
    let mut out = Snapshot::new();
    for dn in dns {
        let mut values = Vec::new();
        for attr in ATTRS {
            values.push(ad.read_attribute(dn, attr).await.unwrap());
        }
        out.insert(dn.clone(), values);
    }
    out
}

/// The error names the input: its first characters appear, as typed or `{:?}`-quoted, and a
/// long input is not repeated in full.
fn assert_names_input(id: &str, msg: &str) {
    let head: String = id.chars().take(24).collect();
    let quoted = format!("{head:?}");
    let quoted = quoted.trim_end_matches('"');
    assert!(
        msg.contains(&head) || msg.contains(quoted),
        "error for {:?} does not name it: {msg}",
        excerpt(id)
    );
    assert!(
        msg.len() < 4096,
        "error for {:?} is {} bytes",
        excerpt(id),
        msg.len()
    );
}

fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Disable + reset on one Exchange server, with the given flusher; no user yet.
fn builder(dir: &Arc<dyn Directory>, flusher: &RecordingFlusher) -> RemediationBuilder {
    let ex = ExchangeServer::new("EXH1", "exh1.lab.example.test")
        .with_version(ExchangeVersion::new(15, 2, 1258))
        .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS);
    Remediation::builder()
        .directory(dir.clone())
        .flusher(Arc::new(flusher.clone()))
        .servers(vec![ex])
        .disable()
        .reset_password(NewPassword::Generate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_are_refused_and_change_nothing() {
    let Some(ad) = SambaAd::require("hostile remediation (Samba AD + orchestrator)") else {
        return;
    };
    // Target `ca…` (Latin, so that `са…` in Cyrillic looks the same), a decoy that a `ca…*`
    // or prefix match would reach, an unrelated decoy that `*` would reach.
    let target = ad
        .create_user(&SambaAd::unique_name("ca"), &secret(OLD_PW))
        .await
        .unwrap();
    let mut created = vec![target.clone()];
    for sam in [format!("{}x", target.sam), SambaAd::unique_name("hd")] {
        created.push(ad.create_user(&sam, &secret(OLD_PW)).await.unwrap());
    }
    let outcome = tokio::spawn(refuse_then_revoke(ad, created.clone())).await;
    for u in &created {
        ad.delete(&u.dn).await.unwrap();
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn refuse_then_revoke(ad: &'static SambaAd, created: Vec<AdUser>) {
    let target = &created[0];
    let env = ad.env();
    let (t, dom, base, netbios) = (&target.sam, env.dns_domain(), &env.base_dn, &env.domain);
    let mut watched: Vec<String> = created.iter().map(|u| u.dn.clone()).collect();
    watched.push(format!("CN=Guest,CN=Users,{base}"));
    watched.push(format!("CN=krbtgt,CN=Users,{base}"));
    let dir: Arc<dyn Directory> = Arc::new(env.directory().build().await.unwrap());
    let flusher = RecordingFlusher::new();
    let before = snapshot(ad, &watched).await;

    let look_alike = format!("\u{441}\u{430}{}", &t[2..]); // Cyrillic "са"
    let hostile: Vec<String> = vec![
        "*".into(),
        "a*".into(),
        format!("{t}*"),
        "x)(objectClass=*".into(),
        format!("{t})(objectClass=*"),
        format!("CN=x,CN=Users,{base})(objectClass=*"),
        format!("CN={t},CN=Users,{base})(objectClass=*"),
        format!("*@{dom}"),
        format!("{t}\0"),
        format!(" {t}"),
        format!("{t} "),
        format!("{t}@{dom} "),
        format!("{t}{}", "a".repeat(64 * 1024)),
        format!("{netbios}\\\\{t}"),
        "a@b@c".into(),
        format!("{t}@x@{dom}"),
        look_alike.clone(),
        format!("{look_alike}@{dom}"),
    ];

    // One user per run: refused at build() or at plan().
    for id in &hostile {
        let refused: RemediationError = match builder(&dir, &flusher).user(id).build() {
            Err(e) => e,
            Ok(r) => match r.plan().await {
                Err(e) => e,
                Ok(plan) => panic!("{:?} planned: {}", excerpt(id), plan.summary()),
            },
        };
        assert_names_input(id, &refused.to_string());
    }

    // All at once, the real target among them: every hostile one is named, nothing runs.
    let mut many = hostile.clone();
    many.insert(3, target.upn.clone());
    let refused = match builder(&dir, &flusher).users(many).build_many() {
        Err(e) => panic!("build_many refused the list itself: {e}"),
        Ok(r) => r.plan().await.expect_err("a plan with hostile users"),
    };
    let RemediationError::UnresolvedUsers { total, problems } = &refused else {
        panic!("{refused}");
    };
    assert_eq!(*total, hostile.len() + 1);
    let named: Vec<&String> = problems.iter().map(|(u, _)| u).collect();
    assert_eq!(named, hostile.iter().collect::<Vec<_>>(), "{refused}");
    let text = refused.to_string();
    for id in &hostile {
        assert_names_input(id, &text);
    }

    assert!(flusher.calls().is_empty(), "{:?}", flusher.calls());
    assert_eq!(
        snapshot(ad, &watched).await,
        before,
        "a hostile identifier changed an account"
    );

    // The legitimate run: the target, and only the target, changes.
    let run = builder(&dir, &flusher).user(&target.upn).build().unwrap();
    let plan = run.plan().await.unwrap();
    let report = run.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert!(
        flusher
            .calls()
            .iter()
            .any(|c| c.server == "EXH1" && matches!(c.operation, FlushOperation::Flush(_))),
        "{:?}",
        flusher.calls()
    );
    let after = snapshot(ad, &watched).await;
    let changed: Vec<&String> = after
        .iter()
        .filter(|(dn, v)| before.get(*dn) != Some(*v))
        .map(|(dn, _)| dn)
        .collect();
    assert_eq!(changed, [&target.dn], "only the target may change");
    let old = &before[&target.dn];
    let new = &after[&target.dn];
    let uac: u32 = new[0].as_deref().unwrap().parse().unwrap();
    assert_eq!(uac & 2, 2, "the target is not disabled");
    assert_ne!(new[1], old[1], "the target's password was not reset");
}
