//! `MockMailboxAdmin` (feature `mock`) is usable as `Arc<dyn MailboxAdmin>`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use exch_core::ExchangeServer;
use exch_mailbox::{CasSettings, MailboxAdmin, MailboxId, MockMailboxAdmin};

#[tokio::test]
async fn a_mock_answers_what_it_is_told() {
    let mut mock = MockMailboxAdmin::new();
    mock.expect_cas_settings()
        .times(1)
        .returning(|_, _| Ok(CasSettings::all(false)));
    let admin: Arc<dyn MailboxAdmin> = Arc::new(mock);
    let s = ExchangeServer::new("EX01", "ex01.corp.example");
    let got = admin
        .cas_settings(&s, &MailboxId::new("bob").unwrap())
        .await
        .unwrap();
    assert!(got.open_protocols().is_empty());
}
