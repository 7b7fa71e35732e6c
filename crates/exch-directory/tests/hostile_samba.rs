//! Hostile user identifiers against a real Samba AD DC: LDAP filter and DN metacharacters,
//! NUL, leading/trailing spaces, 64 KiB strings, DN injection, extra backslashes, two `@`,
//! look-alike Unicode. Decoy accounts are created next to the target, named so that a naive
//! filter or the server's own loose comparison would pick them; every identifier goes
//! through `UserRef::parse` and `find_account` → `disable_account` → `reset_password`
//! (what the orchestrator does), and a snapshot of every object in the test's OU (plus the
//! Guest and krbtgt accounts) before and after proves that only the target changed.
//! Skipped (with a SKIPPED line) without a DC, failed when EXCH_REVOKE_REQUIRE_SAMBA=1.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use exch_directory::escape::{dn_canonical, dn_value, same_dn};
use exch_directory::{generate_password, Directory, DirectoryError, LdapDirectory, UserRef};
use exch_samba::SambaAd;
use ldap3::{Scope, SearchEntry};

const SUITE: &str = "exch-directory hostile_samba";
const PASSWORD: &str = "Old-Passw0rd!hostile";
const SNAP_ATTRS: [&str; 4] = [
    "userAccountControl",
    "pwdLastSet",
    "uSNChanged",
    "whenChanged",
];

fn set(v: &[u8]) -> HashSet<Vec<u8>> {
    HashSet::from([v.to_vec()])
}

/// One account created for the test.
#[derive(Debug, Clone)]
struct Person {
    dn: String,
}

struct Fixture {
    ad: &'static SambaAd,
    ou: String,
    dom: String,
}

impl Fixture {
    async fn new(ad: &'static SambaAd) -> Fixture {
        let ou = format!(
            "OU={},{}",
            SambaAd::unique_name("hostile"),
            ad.env().base_dn
        );
        let mut l = ad.admin().await.unwrap();
        let r = l
            .add(
                &ou,
                vec![(b"objectClass".to_vec(), set(b"organizationalUnit"))],
            )
            .await
            .unwrap();
        assert_eq!(r.rc, 0, "create {ou}: {}", r.text);
        Fixture {
            ad,
            ou,
            dom: ad.env().dns_domain(),
        }
    }

    /// Adds an enabled user `CN=<cn>,<ou>` (the CN escaped here, nothing else touched).
    async fn user(&mut self, cn: &str, sam: &str, upn: &str, mail: Option<&str>) -> Person {
        let dn = format!("CN={},{}", dn_value(cn), self.ou);
        let pwd: Vec<u8> = format!("\"{PASSWORD}\"")
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut attrs = vec![
            (b"objectClass".to_vec(), set(b"user")),
            (b"sAMAccountName".to_vec(), set(sam.as_bytes())),
            (b"userPrincipalName".to_vec(), set(upn.as_bytes())),
            (b"unicodePwd".to_vec(), set(&pwd)),
            (b"userAccountControl".to_vec(), set(b"512")),
        ];
        if let Some(m) = mail {
            attrs.push((b"mail".to_vec(), set(m.as_bytes())));
        }
        let mut l = self.ad.admin().await.unwrap();
        let r = l.add(&dn, attrs).await.unwrap();
        assert_eq!(
            r.rc, 0,
            "create {dn:?} (sam {sam:?}, upn {upn:?}): {}",
            r.text
        );
        Person { dn }
    }

    /// (dn → userAccountControl, pwdLastSet, uSNChanged, whenChanged) of every object in
    /// the OU and of two accounts outside it that a `*` would reach.
    async fn snapshot(&self) -> BTreeMap<String, Vec<Option<String>>> {
        let mut l = self.ad.admin().await.unwrap();
        let base = &self.ad.env().base_dn;
        let mut out = BTreeMap::new();
        for (dn, scope) in [
            (self.ou.clone(), Scope::Subtree),
            (format!("CN=Guest,CN=Users,{base}"), Scope::Base),
            (format!("CN=krbtgt,CN=Users,{base}"), Scope::Base),
        ] {
            let (entries, _) = l
                .search(&dn, scope, "(objectClass=*)", SNAP_ATTRS.to_vec())
                .await
                .unwrap()
                .success()
                .unwrap();
            for e in entries.into_iter().map(SearchEntry::construct) {
                let values = SNAP_ATTRS
                    .iter()
                    .map(|a| e.attrs.get(*a).and_then(|v| v.first().cloned()))
                    .collect();
                out.insert(dn_canonical(&e.dn), values);
            }
        }
        out
    }

    /// Deletes everything in the OU (deepest first) and the OU itself.
    async fn clean_up(ad: &SambaAd, ou: &str) {
        let mut l = ad.admin().await.unwrap();
        let (entries, _) = l
            .search(ou, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
            .await
            .unwrap()
            .success()
            .unwrap();
        let mut dns: Vec<String> = entries
            .into_iter()
            .map(|e| SearchEntry::construct(e).dn)
            .collect();
        dns.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for dn in dns {
            ad.delete(&dn).await.unwrap();
        }
    }
}

/// Runs `body` with a fresh OU and removes the OU afterwards, also when `body` panics.
async fn in_own_ou<F, Fut>(ad: &'static SambaAd, body: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let fx = Fixture::new(ad).await;
    let ou = fx.ou.clone();
    let outcome = tokio::spawn(body(fx)).await;
    Fixture::clean_up(ad, &ou).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn ldaps(ad: &SambaAd) -> LdapDirectory {
    ad.env()
        .directory()
        .timeout(Duration::from_secs(15))
        .build()
        .await
        .unwrap()
}

/// What the orchestrator does with an identifier: parse, find, disable, reset.
async fn revoke(dir: &LdapDirectory, id: &str) -> Result<String, DirectoryError> {
    let user = UserRef::parse(id)?;
    let account = dir.find_account(&user).await?;
    dir.disable_account(&account).await?;
    let pw = generate_password();
    dir.reset_password(&account, &pw).await?;
    Ok(account.dn.0)
}

/// The error names the input: its first characters appear, as typed or `{:?}`-quoted.
fn assert_names_input(id: &str, e: &DirectoryError) {
    let msg = e.to_string();
    let head: String = id.chars().take(24).collect();
    let quoted = format!("{head:?}");
    let quoted = quoted.trim_end_matches('"');
    assert!(
        msg.contains(&head) || msg.contains(quoted),
        "error for {id:?} does not name it: {msg}"
    );
    assert!(msg.len() < 2048, "error for {id:?} is {} bytes", msg.len());
}

#[tokio::test]
async fn hostile_identifiers_change_only_the_target() {
    let Some(ad) = SambaAd::require(SUITE) else {
        return;
    };
    in_own_ou(ad, change_only_the_target).await;
}

async fn change_only_the_target(mut fx: Fixture) {
    let ad = fx.ad;
    let dir = ldaps(ad).await;
    let b = SambaAd::unique_name("h");
    let dom = fx.dom.clone();
    let netbios = ad.env().domain.clone();
    let t = format!("{b}ka");
    let target = fx.user(&t, &t, &format!("{t}@{dom}"), None).await;
    // Decoys: a naive `t*` filter, the server's space folding, look-alikes, metacharacters.
    let prefix = fx
        .user(
            &format!("{t}x"),
            &format!("{t}x"),
            &format!("{t}x@{dom}"),
            None,
        )
        .await;
    let _space = fx
        .user(
            &format!("{b}s "),
            &format!("{b}s "),
            &format!("{b}sp@{dom}"),
            None,
        )
        .await;
    let _lead = fx
        .user(
            &format!(" {b}l"),
            &format!(" {b}l"),
            &format!("{b}l@{dom}"),
            None,
        )
        .await;
    let cyr = fx
        .user(
            &format!("{b}kа"),
            &format!("{b}kа"),
            &format!("{b}kа@{dom}"),
            None,
        )
        .await;
    let full = fx
        .user(
            &format!("{b}ｋa"),
            &format!("{b}ｋa"),
            &format!("{b}ｋa@{dom}"),
            None,
        )
        .await;
    let meta_cn = format!(r#"{b}m, "q"+<r>;=\#"#);
    let meta = fx
        .user(
            &meta_cn,
            &format!("{b}m"),
            &format!("{b}*(m)@{dom}"),
            Some(&format!("o'{b}@{dom}")),
        )
        .await;
    let hash = fx
        .user(
            &format!("#{b}h"),
            &format!("#{b}h"),
            &format!("#{b}h@{dom}"),
            None,
        )
        .await;
    // A decoy whose mail is the target's UPN: the UPN match must win.
    let _mail = fx
        .user(
            &format!("{b}ml"),
            &format!("{b}ml"),
            &format!("{b}ml@{dom}"),
            Some(&format!("{t}@{dom}")),
        )
        .await;
    let ou = fx.ou.clone();
    let before = fx.snapshot().await;

    // Identifiers naming exactly one account: found, and that account only.
    let exact: Vec<(String, &Person)> = vec![
        (t.clone(), &target),
        (t.to_uppercase(), &target),
        (format!("{netbios}\\{t}"), &target),
        (format!("{}\\{t}", netbios.to_lowercase()), &target),
        (format!("{t}@{dom}"), &target),
        (
            format!("{}@{}", t.to_uppercase(), dom.to_uppercase()),
            &target,
        ),
        (format!("CN={t},{ou}"), &target),
        (
            format!("cn={}, {}", t.to_uppercase(), ou.to_lowercase()),
            &target,
        ),
        (format!("{t}x"), &prefix),
        (format!("{b}kа"), &cyr),
        (format!("{b}ｋa"), &full),
        (format!("{b}ＫA"), &full),
        (format!("CN={},{ou}", dn_value(&meta_cn)), &meta),
        (format!("{b}*(m)@{dom}"), &meta),
        (format!("o'{b}@{dom}"), &meta),
        (format!("{b}m"), &meta),
        (format!("#{b}h"), &hash),
        (format!("#{b}h@{dom}"), &hash),
    ];
    for (id, who) in &exact {
        let found = dir.find_account(&UserRef::parse(id).unwrap()).await;
        let found = found.unwrap_or_else(|e| panic!("{id:?}: {e}"));
        assert!(
            same_dn(&who.dn, found.dn.as_str()),
            "{id:?} found {}",
            found.dn
        );
    }

    // Identifiers refused before anything is sent.
    let long = "a".repeat(64 * 1024);
    let refused: Vec<String> = vec![
        "*".into(),
        format!("{b}*"),
        format!("{t}*"),
        format!("{t})(sAMAccountName=*"),
        format!("{t}\\"),
        format!("{t},x"),
        format!("{t}+x"),
        format!("{t}\"x"),
        format!("{t}<x"),
        format!("{t}>x"),
        format!("{t};x"),
        format!("{t}=x"),
        format!("{t}\0"),
        format!("{t}\0zz"),
        format!("{t}@{dom}\0"),
        format!(" {t}"),
        format!("{t} "),
        format!("{b}s "),
        format!("\u{3000}{t}"),
        format!("{t}{long}"),
        format!("{long}@{dom}"),
        format!("CN={long},{ou}"),
        format!("{netbios}\\\\{t}"),
        format!("\\{t}"),
        format!("{netbios}\\{t}\\"),
        format!("{netbios}\\\\\\{t}"),
        format!("{t}@x@{dom}"),
        format!("@{t}@{dom}"),
        format!("CN={t}\",{ou}"),
        format!("CN={t},{ou}\\"),
    ];
    for id in &refused {
        let e = UserRef::parse(id).expect_err(id);
        assert!(
            matches!(e, DirectoryError::InvalidInput { .. }),
            "{id:?}: {e:?}"
        );
        assert_names_input(id, &e);
    }

    // Identifiers that parse but name no account: a clear error, nothing changed.
    let unmatched: Vec<String> = vec![
        format!("{b}(ka)"),
        format!("{b}s"),
        format!("{b}l"),
        format!("{b}  s"),
        format!("{b}\u{212a}a"),
        format!("{b}кa"),
        format!("#{t}"),
        format!("*@{dom}"),
        format!("{t}*@{dom}"),
        format!("{b}*@{dom}"),
        format!("*)(objectClass=*@{dom}"),
        format!("{t}@{dom})(|(mail=*"),
        format!("{b}\\ka"),
        format!("CN={b}s,{ou}"),
        format!("CN={b}l,{ou}"),
        format!("CN={t}*,{ou}"),
        format!("CN=*,{ou}"),
        format!("CN={b}\u{212a}a,{ou}"),
        format!("CN={t},{ou})(objectClass=*"),
        format!("CN=x,{ou})(|(cn=*"),
    ];
    for id in &unmatched {
        let e = revoke(&dir, id).await.expect_err(id);
        assert!(
            matches!(
                e,
                DirectoryError::NotFound { .. } | DirectoryError::InvalidInput { .. }
            ),
            "{id:?}: {e:?}"
        );
        assert_names_input(id, &e);
    }
    assert_eq!(
        fx.snapshot().await,
        before,
        "a hostile identifier changed something"
    );

    // The target itself, through the same path: only it changes.
    assert_eq!(
        revoke(&dir, &format!("{t}@{dom}")).await.unwrap().as_str(),
        target.dn.as_str()
    );
    let after = fx.snapshot().await;
    let changed: Vec<&String> = after
        .iter()
        .filter(|(dn, v)| before.get(*dn) != Some(v))
        .map(|(dn, _)| dn)
        .collect();
    assert_eq!(
        changed,
        vec![&dn_canonical(&target.dn)],
        "only the target may change"
    );
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let uac: u32 = after[&dn_canonical(&target.dn)][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(uac & 2, 2, "target not disabled");
}

async fn raw(l: &mut ldap3::Ldap, base: &str, filter: String) -> Vec<String> {
    let (es, _) = l
        .search(base, Scope::Subtree, &filter, vec!["cn"])
        .await
        .unwrap()
        .success()
        .unwrap();
    es.into_iter()
        .map(|e| SearchEntry::construct(e).dn)
        .collect()
}

/// Samba's own comparison is looser than the caller's string: it ignores leading, trailing
/// and repeated spaces and stops at a NUL, but does not fold width, look-alikes or the
/// Kelvin sign. This is why `find_account` re-checks every entry the server returns.
#[tokio::test]
async fn samba_matching_is_looser_than_exact() {
    let Some(ad) = SambaAd::require(SUITE) else {
        return;
    };
    in_own_ou(ad, looser_than_exact).await;
}

async fn looser_than_exact(mut fx: Fixture) {
    let ad = fx.ad;
    let b = SambaAd::unique_name("hm");
    let dom = fx.dom.clone();
    let spaced = fx
        .user(
            &format!("{b}t "),
            &format!("{b}t "),
            &format!("{b}t@{dom}"),
            None,
        )
        .await;
    let plain = fx
        .user(
            &format!("{b}k"),
            &format!("{b}k"),
            &format!("{b}k@{dom}"),
            None,
        )
        .await;
    let mut l = ad.admin().await.unwrap();
    let ou = fx.ou.clone();
    assert_eq!(
        raw(&mut l, &ou, format!("(sAMAccountName={b}t)")).await,
        vec![spaced.dn.clone()]
    );
    assert_eq!(
        raw(&mut l, &ou, format!("(sAMAccountName={b}k\\00zz)")).await,
        vec![plain.dn.clone()]
    );
    assert!(raw(&mut l, &ou, format!("(sAMAccountName={b}\u{212a})"))
        .await
        .is_empty());
    assert!(raw(&mut l, &ou, format!("(sAMAccountName={b}\u{ff4b})"))
        .await
        .is_empty());
    assert!(raw(&mut l, &ou, format!("(sAMAccountName={b}\u{043a})"))
        .await
        .is_empty());
    // …and a DN without the trailing space resolves to the spaced account.
    let (es, _) = l
        .search(
            &format!("CN={b}t,{}", fx.ou),
            Scope::Base,
            "(objectClass=*)",
            vec!["cn"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(es.len(), 1);
    drop(l);
    // exch-directory acts on none of them.
    let dir = ldaps(ad).await;
    for id in [
        format!("{b}t"),
        format!("CN={b}t,{}", fx.ou),
        format!("{b}\u{ff4b}"),
    ] {
        let e = dir
            .find_account(&UserRef::parse(&id).unwrap())
            .await
            .expect_err(&id);
        assert!(matches!(e, DirectoryError::NotFound { .. }), "{id}: {e}");
        assert_names_input(&id, &e);
    }
}
