//! What `WinRmMailbox` refuses before anything is sent (the server's listener never sees a
//! connection), and how transport failures come back: naming the server, never the password.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_iis::WinRmFlusher;
use exch_mailbox::{
    CasChange, MailboxAdmin, MailboxError, MailboxId, RuleAction, WinRmMailbox, WipeMode,
};
use secrecy::SecretString;

const PASSWORD: &str = "S3cret-Pa55";

fn admin(port: u16) -> WinRmMailbox {
    let winrm = WinRmFlusher::builder()
        .credentials("exadmin", SecretString::from(PASSWORD.to_owned()))
        .endpoint("EX1", format!("http://127.0.0.1:{port}/wsman"))
        .build()
        .unwrap();
    WinRmMailbox::new(winrm)
}

fn server(version: ExchangeVersion) -> ExchangeServer {
    ExchangeServer::new("EX1", "ex1.corp.example")
        .with_version(version)
        .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
}

#[tokio::test]
async fn refused_before_anything_is_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let admin = admin(listener.local_addr().unwrap().port());
    let ex2019 = server(ExchangeVersion::new(15, 2, 1258));
    let ex2013 = server(ExchangeVersion::new(15, 0, 1497));
    let ex2010 = server(ExchangeVersion::new(14, 3, 123));
    let edge = server(ExchangeVersion::new(15, 2, 1258)).with_roles(ServerRoles::EDGE);
    let bob = MailboxId::new("bob@corp.example").unwrap();

    for s in [&ex2010, &edge] {
        let e = admin.cas_settings(s, &bob).await.unwrap_err();
        assert!(matches!(e, MailboxError::Unsupported { .. }), "{e:?}");
        assert_eq!(e.server(), Some("EX1"));
    }
    let one = vec!["bob\\ExchangeActiveSyncDevices\\iPhone§A".to_owned()];
    let e = admin
        .wipe_devices(&ex2013, &bob, &one, WipeMode::AccountOnly)
        .await
        .unwrap_err();
    assert!(matches!(e, MailboxError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("2016"), "{e}");

    let e = admin
        .block_devices(&ex2019, &bob, &["a\0b".to_owned()])
        .await
        .unwrap_err();
    assert!(matches!(e, MailboxError::InvalidInput { .. }), "{e:?}");
    assert!(
        e.to_string().contains("a\\0b"),
        "the value byte for byte, escaped: {e}"
    );
    let e = admin
        .set_cas(&ex2019, &bob, &CasChange::new())
        .await
        .unwrap_err();
    assert!(matches!(e, MailboxError::InvalidInput { .. }), "{e:?}");
    let e = admin
        .change_inbox_rules(&ex2019, &bob, &[], RuleAction::Remove)
        .await
        .unwrap_err();
    assert!(matches!(e, MailboxError::InvalidInput { .. }), "{e:?}");

    // Two hundred devices do not fit on one command line.
    let many: Vec<String> = (0..200)
        .map(|i| format!("corp.example/Users/Bob/ExchangeActiveSyncDevices/REST§Outlook§{i:032}"))
        .collect();
    let e = admin
        .wipe_devices(&ex2019, &bob, &many, WipeMode::AccountOnly)
        .await
        .unwrap_err();
    match &e {
        MailboxError::ScriptTooLong {
            server,
            mailbox,
            length,
            limit,
            ..
        } => {
            assert_eq!(
                (server.as_str(), mailbox.as_str(), *limit),
                ("EX1", "bob@corp.example", 8191)
            );
            assert!(*length > 8191);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("fewer"), "{e}");

    assert_eq!(admin.winrm().round_trips_total(), 0);
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "something was sent: {accepted:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_transient_and_named() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let admin = admin(port);
    let e = admin
        .forwarding(
            &server(ExchangeVersion::new(15, 2, 1258)),
            &MailboxId::new("bob").unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, MailboxError::Unreachable { .. }) && e.is_transient(),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("EX1") && !e.to_string().contains(PASSWORD),
        "{e}"
    );
    assert!(
        std::error::Error::source(&e).is_some(),
        "the transport's error is the source"
    );
}
