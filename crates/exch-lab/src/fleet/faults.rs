//! Faults a test can inject into one server, and the gate in front of its WinRM endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::clock::lock;

/// Faults of one simulated server. All can be changed at runtime through
/// [`crate::fleet::LabServer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// Nobody listens on the server's port: connections are refused.
    pub unreachable: bool,
    /// Every WinRM request waits this long (real time) before it is answered: set it past the
    /// client's timeout to make the server "slow".
    pub winrm_delay: Option<Duration>,
    /// The server does not accept the fleet's WinRM credentials (HTTP 401).
    pub wrong_credentials: bool,
    /// Every WinRM request gets a SOAP fault (HTTP 500, `w:AccessDenied`, WSManFault code 5).
    pub soap_fault: bool,
    /// Pools whose recycle fails with a PowerShell-style error.
    pub failing_pools: Vec<String>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults::default()
    }

    /// The port refuses connections.
    pub fn unreachable() -> Self {
        Faults {
            unreachable: true,
            ..Faults::default()
        }
    }

    /// WinRM answers only after `delay`.
    pub fn slow(delay: Duration) -> Self {
        Faults {
            winrm_delay: Some(delay),
            ..Faults::default()
        }
    }

    /// WinRM refuses the fleet's credentials.
    pub fn wrong_credentials() -> Self {
        Faults {
            wrong_credentials: true,
            ..Faults::default()
        }
    }

    /// WinRM answers every request with a SOAP fault.
    pub fn soap_fault() -> Self {
        Faults {
            soap_fault: true,
            ..Faults::default()
        }
    }

    /// Recycling `pool` fails.
    pub fn failing_pool(pool: impl Into<String>) -> Self {
        Faults {
            failing_pools: vec![pool.into()],
            ..Faults::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WinRmFaults {
    pub(crate) delay: Option<Duration>,
    pub(crate) wrong_credentials: bool,
    pub(crate) soap_fault: bool,
}

/// Shared between a server handle and the middleware in front of its `/wsman`.
#[derive(Debug, Default)]
pub(crate) struct WinRmGate {
    pub(crate) faults: Mutex<WinRmFaults>,
    pub(crate) requests: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl WinRmGate {
    pub(crate) fn update(&self, f: impl FnOnce(&mut WinRmFaults)) {
        f(&mut lock(&self.faults));
    }

    pub(crate) fn snapshot(&self) -> WinRmFaults {
        *lock(&self.faults)
    }
}

/// Largest request body the SOAP-fault path reads to find the `MessageID` (MaxEnvelopeSize
/// of Windows is 500 KB).
const MAX_BODY: usize = 512 * 1024;

/// Counts WinRM requests and applies the injected faults before the WinRM service sees them.
pub(crate) async fn winrm_gate(
    State(gate): State<Arc<WinRmGate>>,
    request: Request,
    next: Next,
) -> Response {
    gate.requests.fetch_add(1, Ordering::Relaxed);
    let faults = gate.snapshot();
    if let Some(delay) = faults.delay {
        tokio::time::sleep(delay).await;
    }
    if faults.wrong_credentials {
        gate.refused.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"WSMAN\""),
            )],
            Body::empty(),
        )
            .into_response();
    }
    if faults.soap_fault {
        gate.refused.fetch_add(1, Ordering::Relaxed);
        let body = to_bytes(request.into_body(), MAX_BODY)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        return access_denied(
            message_id(&text).unwrap_or("uuid:00000000-0000-0000-0000-000000000000"),
        );
    }
    next.run(request).await
}

/// The text of the first `MessageID` element, whatever its prefix.
fn message_id(xml: &str) -> Option<&str> {
    let start = xml.find("MessageID")?;
    let after = &xml[start..];
    let open_end = after.find('>')? + 1;
    let rest = &after[open_end..];
    let close = rest.find('<')?;
    Some(rest[..close].trim())
}

fn access_denied(relates_to: &str) -> Response {
    let relates_to = relates_to.replace(['<', '>', '&', '"'], "");
    let message_id = uuid::Uuid::new_v4();
    let body = format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"><s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action><a:MessageID>uuid:{message_id}</a:MessageID><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To><a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:AccessDenied</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">Access is denied. </s:Text></s:Reason><s:Detail><f:WSManFault Code="5" Machine="localhost"><f:Message>Access is denied. </f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#
    );
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_found_with_any_prefix() {
        let xml = r#"<s:Envelope><s:Header><wsa:MessageID s:mustUnderstand="true">uuid:ABC</wsa:MessageID></s:Header></s:Envelope>"#;
        assert_eq!(message_id(xml), Some("uuid:ABC"));
        assert_eq!(message_id("<x/>"), None);
    }
}
