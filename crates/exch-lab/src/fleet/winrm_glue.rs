//! Glue between the fleet and the WinRM endpoint ([`crate::winrm`]).

use std::sync::Arc;

use secrecy::SecretString;

use super::faults::Faults;
use crate::host::IisHost;
use crate::model::IisServer;
use crate::winrm::{KerberosAcceptorConfig, LabAuth, WinRmConfig, WinRmFaults, WinRmService};

/// The credentials a server's WinRM endpoint accepts, and how.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: SecretString,
    pub(crate) auth: LabAuth,
}

/// The WinRM endpoint of one server, running scripts against its IIS model.
pub(crate) fn winrm_service(
    iis: IisServer,
    machine: &str,
    credentials: &Credentials,
    kerberos: Option<KerberosAcceptorConfig>,
) -> WinRmService {
    let mut config = WinRmConfig::new(credentials.user.clone(), credentials.password.clone())
        .with_auth(credentials.auth);
    config.kerberos = kerberos;
    config.machine = machine.to_owned();
    let host: Arc<dyn IisHost> = Arc::new(iis);
    WinRmService::new(host, config)
}

/// Applies the WinRM part of `faults`.
pub(crate) fn apply(service: &WinRmService, faults: &Faults) {
    service.faults().update(|f: &mut WinRmFaults| {
        f.response_delay = faults.winrm_delay;
        f.wrong_credentials = faults.wrong_credentials;
        f.command_fault = faults.soap_fault;
        f.hang_after_accept = faults.hang;
        f.timed_out_receives = faults.timed_out_receives;
        f.command_exit = faults.exit_code;
        f.malformed_output = faults.malformed_json;
    });
}
