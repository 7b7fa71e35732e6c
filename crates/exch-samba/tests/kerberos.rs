//! The DC's KDC and `SambaAd::add_http_service`: a user gets a service ticket for
//! `HTTP/<fqdn>` with MIT `kinit`/`kvno` (krb5-user) and the exported keytab holds the key
//! that ticket is encrypted with (same kvno, aes256).
#![allow(clippy::unwrap_used)]

use exch_samba::SambaAd;
use secrecy::SecretString;
use std::process::Command;

#[tokio::test]
async fn http_service_principal_keytab_and_ticket() {
    let Some(ad) = SambaAd::require("exch-samba kerberos") else {
        return;
    };
    let env = ad.env();
    let Some(krb5_conf) = env.krb5_conf.clone() else {
        eprintln!(
            "SKIPPED: exch-samba kerberos: {} has no AD_KRB5_CONF (DC without KDC)",
            env.file.display()
        );
        return;
    };
    if Command::new("kinit").arg("-V").output().is_err() {
        eprintln!("SKIPPED: exch-samba kerberos: kinit not installed (apt-get install krb5-user)");
        return;
    }
    let fqdn = format!(
        "{}.{}",
        SambaAd::unique_name("ex").to_lowercase(),
        env.dns_domain()
    );
    let svc = ad.add_http_service(&fqdn).unwrap();
    assert_eq!(svc.principal, format!("HTTP/{fqdn}@{}", env.realm));
    assert_eq!(ad.add_http_service(&fqdn).unwrap(), svc, "idempotent");

    let sam = SambaAd::unique_name("krb");
    let pw = "Krb-Passw0rd-1!";
    let user = ad.create_user(&sam, &SecretString::from(pw)).await.unwrap();
    let cc = std::env::temp_dir().join(format!("exch-samba-cc-{sam}"));
    let krb = |prog: &str, args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut child = Command::new(prog)
            .args(args)
            .env("KRB5_CONFIG", &krb5_conf)
            .env("KRB5CCNAME", format!("FILE:{}", cc.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = krb(
        "kinit",
        &[&format!("{}@{}", sam, env.realm)],
        Some(&format!("{pw}\n")),
    );
    assert!(ok, "kinit: {out}");
    let (ok, out) = krb("kvno", &[&format!("HTTP/{fqdn}")], None);
    assert!(ok, "kvno: {out}");
    let (ok, keys) = krb("klist", &["-ke", svc.keytab.to_str().unwrap()], None);
    assert!(ok, "klist -k: {keys}");
    // kvno prints "HTTP/…@REALM: kvno = N"; the keytab must hold that kvno's aes256 key.
    let kvno = out.rsplit("kvno = ").next().unwrap().trim().to_owned();
    assert!(
        keys.lines()
            .any(|l| l.trim_start().starts_with(&format!("{kvno} ")) && l.contains("aes256-cts")),
        "keytab lacks kvno {kvno} aes256: {keys}"
    );
    let (ok, out) = krb(
        "kinit",
        &[&format!("{}@{}", sam, env.realm)],
        Some("Wrong-Passw0rd-1!\n"),
    );
    assert!(
        !ok && (out.contains("Password incorrect") || out.contains("Preauthentication failed")),
        "{out}"
    );
    let _ = std::fs::remove_file(&cc);
    ad.delete(&user.dn).await.unwrap();
}
