//! `RevokeMany` against the Samba AD DC of the test run.

use super::*;
use exch_remediate::ManyReport;
use exch_samba::SambaAd;

#[tokio::test]
async fn revoke_many_against_samba() {
    let Some(ad) = SambaAd::require("exch-remediate many (Samba)") else {
        return;
    };
    let old = SecretString::from("Old-Passw0rd!x7");
    let mut created = Vec::new();
    for _ in 0..4 {
        let sam = SambaAd::unique_name("many");
        created.push(ad.create_user(&sam, &old).await.unwrap());
    }
    let dir = Arc::new(ad.env().directory().connections(2).build().await.unwrap());
    let flusher = Arc::new(RecordingFlusher::new());
    let mut names: Vec<String> = created.iter().map(|u| u.upn.clone()).collect();
    names[1] = created[1].sam.clone(); // a bare sAMAccountName works too
                                       // One account changed behind our back after the plan (DONT_EXPIRE_PASSWORD set): the
                                       // guarded swap refuses the stale value, the fallback re-reads, no update is lost.
    let run = Remediation::builder()
        .directory(dir.clone())
        .flusher(flusher.clone())
        .servers(vec![server("EX01")])
        .users(names.clone())
        .disable()
        .reset_password(NewPassword::Generate)
        .accounts_in_flight(4)
        .build_many()
        .unwrap();
    let plan = run.plan().await.unwrap();
    ad.replace_attribute(&created[3].dn, "userAccountControl", "66048")
        .await
        .unwrap();
    let report = run.execute(&plan).await;
    let mut uac = Vec::new();
    for u in &created {
        uac.push(
            ad.read_attribute(&u.dn, "userAccountControl")
                .await
                .unwrap(),
        );
        let _ = ad.delete(&u.dn).await;
    }
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(flushes(&flusher), vec!["EX01"]);
    let uac: Vec<&str> = uac.iter().map(|v| v.as_deref().unwrap()).collect();
    assert_eq!(uac, ["514", "514", "514", "66050"]);
    assert!(report
        .users
        .iter()
        .all(|u| u.actions[0].outcome == Some(ChangeOutcome::Applied)));
    assert!(!serde_json::to_string(&report)
        .unwrap()
        .contains(run.new_password(&names[0]).unwrap().expose_secret()));
}

#[tokio::test]
async fn batched_lookups_name_bad_users_on_samba() {
    let Some(ad) = SambaAd::require("exch-remediate many (Samba)") else {
        return;
    };
    let env = ad.env();
    let u = ad
        .create_user(
            &SambaAd::unique_name("many"),
            &SecretString::from("Old-Passw0rd!x7"),
        )
        .await
        .unwrap();
    let dir = Arc::new(ad.env().directory().build().await.unwrap());
    let missing = format!("{}-nosuch@{}", u.sam, env.dns_domain());
    let upper = u.upn.to_uppercase();
    let result = Remediation::builder()
        .directory(dir)
        .flusher(Arc::new(RecordingFlusher::new()))
        .servers(vec![server("EX01")])
        .users([
            u.upn.clone(),
            missing.clone(),
            upper.clone(),
            "Administrator".into(),
        ])
        .disable()
        .build_many()
        .unwrap()
        .plan()
        .await;
    let uac = ad
        .read_attribute(&u.dn, "userAccountControl")
        .await
        .unwrap();
    let _ = ad.delete(&u.dn).await;
    let Err(RemediationError::UnresolvedUsers { problems, .. }) = result else {
        panic!("expected UnresolvedUsers, got {result:?}");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].0, missing);
    assert!(matches!(problems[0].1, UserProblem::NotFound { .. }));
    assert_eq!(problems[1].0, upper);
    assert!(matches!(&problems[1].1, UserProblem::Duplicate { of, .. } if of == &u.upn));
    assert_eq!(uac.as_deref(), Some("512"));
}

/// Revokes `n` new users (disable + generated reset; `contain_first` or not) and checks on
/// the DC that each is disabled (514), refuses its old password (52e) and has its new one
/// (a bind with it answers 533: only the disable refuses it).
async fn revoke_and_check(ad: &SambaAd, n: usize, contain_first: bool) -> ManyReport {
    let old = SecretString::from("Old-Passw0rd!x7");
    let mut created = Vec::new();
    for _ in 0..n {
        let sam = SambaAd::unique_name("many");
        created.push(ad.create_user(&sam, &old).await.unwrap());
    }
    let run = Remediation::builder()
        .directory(Arc::new(
            ad.env().directory().connections(2).build().await.unwrap(),
        ))
        .flusher(Arc::new(RecordingFlusher::new()))
        .servers(vec![server("EX01")])
        .users(created.iter().map(|u| u.upn.clone()))
        .disable()
        .reset_password(NewPassword::Generate)
        .accounts_in_flight(2);
    let run = if contain_first {
        run.contain_first()
    } else {
        run
    };
    let run = run.build_many().unwrap();
    let report = run.execute(&run.plan().await.unwrap()).await;
    let mut seen = Vec::new();
    for u in &created {
        let uac = ad
            .read_attribute(&u.dn, "userAccountControl")
            .await
            .unwrap();
        let old_bind = ad.try_bind(&u.upn, &old).await.unwrap();
        let new_bind = ad
            .try_bind(&u.upn, run.new_password(&u.upn).unwrap())
            .await
            .unwrap();
        let _ = ad.delete(&u.dn).await;
        seen.push((u.upn.clone(), uac, old_bind, new_bind));
    }
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    for (upn, uac, old_bind, new_bind) in seen {
        assert_eq!(uac.as_deref(), Some("514"), "{upn}");
        assert_eq!(old_bind.rc, 49, "{upn}");
        assert!(old_bind.text.contains("52e"), "{upn}: {}", old_bind.text);
        assert_eq!(new_bind.rc, 49, "{upn}");
        assert!(new_bind.text.contains("533"), "{upn}: {}", new_bind.text);
    }
    report
}

#[tokio::test]
async fn new_password_is_set_and_account_disabled_on_samba() {
    let Some(ad) = SambaAd::require("exch-remediate many (Samba)") else {
        return;
    };
    let report = revoke_and_check(ad, 1, false).await;
    assert!(report.contained_after.is_some());
}

#[tokio::test]
async fn contain_first_against_samba() {
    let Some(ad) = SambaAd::require("exch-remediate many (Samba)") else {
        return;
    };
    let report = revoke_and_check(ad, 3, true).await;
    for u in &report.users {
        assert!(
            u.actions
                .iter()
                .all(|a| a.outcome == Some(ChangeOutcome::Applied)),
            "{:?}",
            u.actions
        );
        assert_eq!(u.actions.len(), 2);
    }
    let contained = report.contained_after.unwrap();
    assert!(contained <= report.elapsed, "{}", report.summary());
    assert!(report
        .steps
        .iter()
        .any(|s| s.step == exch_remediate::Step::ChangeDirectory
            && s.detail.contains("contain first")));
}
