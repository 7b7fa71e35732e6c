//! Glue between the fleet and the WinRM endpoint ([`crate::winrm`]).

use std::sync::Arc;

use axum::Router;
use secrecy::SecretString;

use super::faults::{winrm_gate, WinRmGate};
use crate::model::IisServer;

/// The Basic credentials a server's WinRM endpoint accepts.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: SecretString,
}

/// `POST /wsman` of one server, behind the fault gate.
pub(crate) fn winrm_router(
    iis: IisServer,
    _name: &str,
    _credentials: &Credentials,
    gate: Arc<WinRmGate>,
) -> Router {
    let _host: Arc<dyn crate::host::IisHost> = Arc::new(iis);
    // Placeholder until crate::winrm lands.
    Router::new()
        .route(
            "/wsman",
            axum::routing::post(|| async { axum::http::StatusCode::NOT_IMPLEMENTED }),
        )
        .layer(axum::middleware::from_fn_with_state(gate, winrm_gate))
}
