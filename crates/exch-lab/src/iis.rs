//! The IIS HTTP endpoints of a simulated server: OWA / ECP forms logon and the virtual
//! directories with Basic and Windows (Negotiate/Kerberos) authentication, each served by the
//! app pool Exchange uses for it.
//!
//! | path | auth (default config) | in the lab | pool (2013+) | pool (2007/2010) |
//! |---|---|---|---|---|
//! | `POST /owa/auth.owa`, `GET /owa/` | forms → `cadata` cookie | same | `MSExchangeOWAAppPool` | same |
//! | `GET /ecp/` | forms (OWA's `cadata` cookie) | same | `MSExchangeECPAppPool` | same |
//! | `/EWS/Exchange.asmx` | Windows only | same, Basic on opt-in ([`IisServer::set_vdir_auth`]) | `MSExchangeServicesAppPool` | same |
//! | `/Microsoft-Server-ActiveSync` | Basic | same | `MSExchangeSyncAppPool` | same |
//! | `/mapi/emsmdb`, `/mapi/nspi` | Windows only | same, Basic on opt-in ([`IisServer::set_vdir_auth`]) | `MSExchangeMapiFrontEndAppPool` | not served (404) |
//! | `/OAB/` | Windows only | same | `MSExchangeOABAppPool` | `DefaultAppPool` |
//! | `/rpc/rpcproxy.dll` | Basic and Windows | same | `MSExchangeRpcProxyFrontEndAppPool` | `DefaultAppPool` |
//! | `/Autodiscover/Autodiscover.xml` | Basic and Windows | same | `MSExchangeAutodiscoverAppPool` | same |
//!
//! Authentication per virtual directory follows the front-end site of Microsoft's default
//! configuration (`<location path="Default Web Site/…">` in microsoft/CSS-Exchange
//! `Shared/Tests/Data/E19_applicationHost_Default.config`; [`crate::catalog::default_auth`]),
//! with no deviation: on `EWS`, `mapi` and `OAB` (Windows only) a Basic request gets `401`
//! with `WWW-Authenticate: Negotiate` and `NTLM` **without any logon** — a refusal that
//! proves nothing about the account. Deployments that still allow Basic on `EWS` or `mapi`
//! are modelled by opting in: [`IisServer::set_vdir_auth`] with
//! [`VdirAuth::BasicAndWindows`]. A `401` offers
//! what the directory has enabled, `Basic realm="<fqdn>"` first, then `Negotiate`, `NTLM`.
//!
//! **Windows authentication** is Kerberos: `Authorization: Negotiate <base64 token>` with a
//! raw krb5 AP-REQ or SPNEGO around one, for `HTTP/<fqdn>` (or `HOST/`), opened with the
//! server's service key ([`router_with_kerberos`]; the fleet gives the IIS routes the key of
//! its WinRM endpoint, as both run under one computer account). Nothing else is asked: not
//! the KDC, not the directory, not the token cache — a ticket issued before its account was
//! disabled is accepted until it expires. The `200` carries the mutual-authentication token
//! (`WWW-Authenticate: Negotiate <AP-REP>`) and `X-Lab-Token: ticket`. The logon then belongs
//! to the **TCP connection** ([`WinRmConnection::windows_logon`], held by the listener as
//! HTTP.sys holds it with kernel-mode authentication and `authPersistSingleRequest="false"`):
//! later requests on it without `Authorization` are that user (`X-Lab-Token: connection`),
//! across recycles of the pool, for the connection's life. Either way the request runs in the
//! pool's current worker and is checked against the mailbox's CAS settings as that worker has
//! them cached, so a lockdown plus a recycle refuses both. Not modelled: NTLM on these
//! directories (a raw NTLM or SPNEGO-NTLM token is refused with `401`), multi-leg SPNEGO,
//! channel binding, and a server without a service key (every ticket refused).
//!
//! Answers: 200 with a tiny body and `X-FEServer`, `X-Lab-Pool`, `X-Lab-Pid`, `X-Lab-Token`
//! (`cache` / `directory`) headers; 401 with `WWW-Authenticate: Basic realm="<fqdn>"` when
//! refused; 503 while IIS or the pool is stopped; 500 when the directory cannot be asked.
//! OWA answers a refused forms logon — and a request whose `cadata` credentials no longer log
//! on — with a redirect to `/owa/auth/logon.aspx?…reason=2`, and a request without a readable
//! cookie with a redirect to the logon page (`reason=0`).
//!
//! **Refusals by the mailbox's CAS settings** ([`Logon::ProtocolDisabled`], after the logon
//! succeeded; the settings as the serving worker has them cached) are `403 Forbidden`, with
//! `X-Lab-Cas-Block: <the Get-CASMailbox property>` and the reason in the body:
//! - ActiveSync: 403 is MS-ASHTTP's answer for "The user is not enabled for ActiveSync
//!   synchronization" (\[MS-ASHTTP\] 2.2.2.1.1 Status Line). A blocked `DeviceId` gets the same
//!   403 — a simplification: Exchange 2010 and later answer a device that access rules block
//!   with HTTP 200 and a status in the command's body (MS-ASCMD common status codes), which a
//!   client without WBXML cannot read.
//! - OWA: 403 with `X-OWA-Error: Microsoft.Exchange.Data.Storage.AccountDisabledException`,
//!   the error OWA names for a mailbox whose OWA is disabled (Microsoft TechNet blog "Office
//!   365: Manage Office 365 features when Outlook Web Access is disabled on a mailbox"); the
//!   lab's choice of status, since OWA shows it on an error page. The `cadata` cookie is kept:
//!   the logon itself succeeded.
//! - EWS: 403, what clients report for a mailbox whose EWS access is off (Exchange Online's
//!   EWS "scream tests", reported as HTTP 403 on `EwsEnabled = $false` mailboxes).
//! - ECP, MAPI over HTTP, Outlook Anywhere: 403, the lab's choice (Exchange's own answers are
//!   protocol errors inside a 200 for MAPI/RPC; not modelled).

use std::collections::HashMap;

use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use base64::Engine as _;
use exch_core::Protocol;
use secrecy::SecretString;

use crate::catalog::VdirAuth;
use crate::model::{CasBlock, IisServer, Logon, TokenSource};
use crate::winrm::{kerberos, KerberosAcceptorConfig, WinRmConnection};

/// Name of the OWA session cookie (as Exchange names the one holding the credentials).
pub const SESSION_COOKIE: &str = "cadata";
/// The OWA logon page.
pub const LOGON_PAGE: &str = "/owa/auth/logon.aspx";

#[derive(Clone)]
struct Endpoints {
    server: IisServer,
    realm: String,
    kerberos: Option<KerberosAcceptorConfig>,
}

/// The IIS routes of `server`; `fqdn` is the Basic realm. Merge it with the WinRM router to
/// serve both on one listener. Without a service key, Windows authentication refuses every
/// ticket: see [`router_with_kerberos`].
pub fn router(server: IisServer, fqdn: &str) -> Router {
    router_with_kerberos(server, fqdn, None)
}

/// [`router`] whose virtual directories with Windows authentication accept Kerberos tickets
/// for `kerberos`'s SPN (`HTTP/<fqdn>`, the key the server's WinRM endpoint uses too). Serve
/// it with `into_make_service_with_connect_info::<WinRmConnection>()` so that a connection
/// keeps its Windows logon (without it every request must carry a ticket).
pub fn router_with_kerberos(
    server: IisServer,
    fqdn: &str,
    kerberos: Option<KerberosAcceptorConfig>,
) -> Router {
    let state = Endpoints {
        server,
        realm: fqdn.to_owned(),
        kerberos,
    };
    let mut router = Router::new();
    let vdirs: [(Protocol, &[&str]); 6] = [
        (Protocol::Ews, &["/EWS/Exchange.asmx"]),
        (Protocol::Eas, &["/Microsoft-Server-ActiveSync"]),
        (
            Protocol::Mapi,
            &["/mapi/emsmdb", "/mapi/emsmdb/", "/mapi/nspi", "/mapi/nspi/"],
        ),
        (Protocol::RpcHttp, &["/rpc/rpcproxy.dll"]),
        (Protocol::Autodiscover, &["/Autodiscover/Autodiscover.xml"]),
        (Protocol::Oab, &["/OAB", "/OAB/"]),
    ];
    for (protocol, paths) in vdirs {
        for path in paths {
            router = route_both_cases(
                router,
                path,
                any(
                    move |State(s): State<Endpoints>, request: Request| async move {
                        vdir_endpoint(s, protocol, request).await
                    },
                ),
            );
        }
    }
    router = route_both_cases(router, "/owa/auth.owa", post(owa_form_logon));
    router = route_both_cases(router, LOGON_PAGE, get(logon_page));
    router = route_both_cases(router, "/owa", any(owa_mailbox));
    router = route_both_cases(router, "/owa/", any(owa_mailbox));
    router = route_both_cases(router, "/ecp", any(ecp_page));
    router = route_both_cases(router, "/ecp/", any(ecp_page));
    router.with_state(state)
}

/// IIS paths are case-insensitive; clients use Exchange's spelling or lower case.
fn route_both_cases(
    router: Router<Endpoints>,
    path: &str,
    method: MethodRouter<Endpoints>,
) -> Router<Endpoints> {
    let lower = path.to_lowercase();
    if lower == path {
        router.route(path, method)
    } else {
        router.route(path, method.clone()).route(&lower, method)
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, SecretString)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_owned(), SecretString::from(password.to_owned())))
}

/// The value of query parameter `name` (case-insensitive name, percent-decoded value), e.g.
/// ActiveSync's `DeviceId`. The base64-encoded query form of MS-ASHTTP is not read.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| percent_decode(value))
        .filter(|value| !value.is_empty())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Authorization: <scheme> <value>`, the scheme lower-cased.
fn authorization(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    Some((scheme.to_ascii_lowercase(), rest.trim().to_owned()))
}

/// A virtual directory with Basic and/or Windows authentication (see the module docs):
/// `Authorization: Basic` where Basic is enabled, `Authorization: Negotiate <AP-REQ>` where
/// Windows authentication is, and — without an `Authorization` header — the Windows logon
/// the TCP connection made earlier.
async fn vdir_endpoint(s: Endpoints, protocol: Protocol, request: Request) -> Response {
    if s.server.pool_for(protocol).is_none() {
        return (
            StatusCode::NOT_FOUND,
            "404 - File or directory not found.\n",
        )
            .into_response();
    }
    let auth = s.server.vdir_auth(protocol);
    let headers = request.headers();
    let connection = request
        .extensions()
        .get::<ConnectInfo<WinRmConnection>>()
        .map(|c| c.0.clone());
    let device_id = (protocol == Protocol::Eas)
        .then(|| query_param(request.uri().query(), "DeviceId"))
        .flatten();
    let device_id = device_id.as_deref();
    match authorization(headers) {
        Some((scheme, token)) if scheme == "negotiate" && auth.accepts_windows() => {
            negotiate_logon(&s, protocol, auth, &token, connection.as_ref(), device_id).await
        }
        Some((scheme, _)) if scheme == "basic" && auth.accepts_basic() => {
            let Some((user, password)) = basic_credentials(headers) else {
                return challenge(&s.realm, auth);
            };
            let logon = s
                .server
                .authenticate_device(protocol, &user, &password, device_id)
                .await;
            respond(&s, protocol, auth, logon)
        }
        // Not a scheme this directory has enabled: IIS offers what it has and never looks
        // at the header (a Basic request to a Windows-only directory logs nothing on).
        Some(_) => challenge(&s.realm, auth),
        None => match connection.and_then(|c| c.windows_logon()) {
            Some(user) if auth.accepts_windows() => {
                let logon = s
                    .server
                    .windows_request(protocol, &user, device_id, TokenSource::Connection)
                    .await;
                respond(&s, protocol, auth, logon)
            }
            _ => challenge(&s.realm, auth),
        },
    }
}

/// `Authorization: Negotiate <base64 AP-REQ>`: the ticket is opened with the server's service
/// key (the WinRM endpoint's acceptor, any principal); the KDC and the directory are not
/// asked. The logon is kept on the connection, and the reply carries the mutual-
/// authentication token (`WWW-Authenticate: Negotiate <AP-REP>`).
async fn negotiate_logon(
    s: &Endpoints,
    protocol: Protocol,
    auth: VdirAuth,
    token: &str,
    connection: Option<&WinRmConnection>,
    device_id: Option<&str>,
) -> Response {
    let accepted = match (
        &s.kerberos,
        base64::engine::general_purpose::STANDARD.decode(token),
    ) {
        (Some(config), Ok(token)) => kerberos::accept_ap_req(config, &token).map_err(|why| {
            tracing::debug!(
                server = s.server.name(),
                ?why,
                "IIS: Negotiate token refused"
            )
        }),
        (None, _) => {
            tracing::debug!(
                server = s.server.name(),
                "IIS: a Negotiate token, and no service key configured"
            );
            Err(())
        }
        (_, Err(_)) => Err(()),
    };
    let Ok((user, reply)) = accepted else {
        s.server.ticket_refused();
        return challenge(&s.realm, auth);
    };
    if let Some(connection) = connection {
        connection.set_windows_logon(&user);
    }
    let logon = s
        .server
        .windows_request(protocol, &user, device_id, TokenSource::Ticket)
        .await;
    let mut response = respond(s, protocol, auth, logon);
    let mutual = reply.map(|r| {
        format!(
            "Negotiate {}",
            base64::engine::general_purpose::STANDARD.encode(r)
        )
    });
    if let Some(value) = mutual.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The HTTP answer to an IIS decision on a Basic or Windows-authenticated request.
fn respond(s: &Endpoints, protocol: Protocol, auth: VdirAuth, logon: Logon) -> Response {
    match logon {
        Logon::Accepted { pool, pid, source } => {
            let mut response = accepted(&s.server, protocol, pool, pid, source);
            if protocol == Protocol::Eas {
                response.headers_mut().insert(
                    "MS-ASProtocolVersions",
                    HeaderValue::from_static("2.0,2.1,2.5,12.0,12.1,14.0,14.1,16.0,16.1"),
                );
            }
            response
        }
        Logon::Refused(_) | Logon::SessionUnknown => challenge(&s.realm, auth),
        Logon::ProtocolDisabled { reason, .. } => cas_refusal(&s.server, reason),
        other => failure(other),
    }
}

/// `403 Forbidden` for a request the mailbox's CAS settings refuse (see the module docs).
fn cas_refusal(server: &IisServer, reason: CasBlock) -> Response {
    let body = match reason {
        CasBlock::ActiveSyncDisabled => {
            "403 - Forbidden: The user is not enabled for ActiveSync synchronization.\n".to_owned()
        }
        other => format!("403 - Forbidden: {other}.\n"),
    };
    let mut response = (StatusCode::FORBIDDEN, body).into_response();
    let headers = response.headers_mut();
    if let Ok(name) = HeaderValue::from_str(server.name()) {
        headers.insert("X-FEServer", name);
    }
    headers.insert(
        "X-Lab-Cas-Block",
        HeaderValue::from_static(reason.setting()),
    );
    if reason == CasBlock::OwaDisabled {
        headers.insert(
            "X-OWA-Error",
            HeaderValue::from_static("Microsoft.Exchange.Data.Storage.AccountDisabledException"),
        );
    }
    response
}

fn accepted(
    server: &IisServer,
    protocol: Protocol,
    pool: &str,
    pid: u32,
    source: TokenSource,
) -> Response {
    let body = format!("OK {protocol} {pool} {pid}\n");
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("X-FEServer", server.name().to_owned()),
        ("X-Lab-Pool", pool.to_owned()),
        ("X-Lab-Pid", pid.to_string()),
        ("X-Lab-Token", source.as_str().to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// `401` offering what the directory has enabled: `Basic realm="<fqdn>"` first, then
/// `Negotiate` and `NTLM` where Windows authentication is on.
fn challenge(realm: &str, auth: VdirAuth) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "401 - Unauthorized: Access is denied due to invalid credentials.\n",
    )
        .into_response();
    let headers = response.headers_mut();
    if auth.accepts_basic() {
        let value = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
        headers.append(header::WWW_AUTHENTICATE, value);
    }
    if auth.accepts_windows() {
        for scheme in ["Negotiate", "NTLM"] {
            headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
        }
    }
    response
}

fn failure(logon: Logon) -> Response {
    match logon {
        Logon::NotServed => (
            StatusCode::NOT_FOUND,
            "404 - File or directory not found.\n",
        )
            .into_response(),
        Logon::DirectoryFailed(detail) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("500 - the logon could not be checked: {detail}\n"),
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "HTTP Error 503. The service is unavailable.\n",
        )
            .into_response(),
    }
}

fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::FOUND, "").into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Where OWA sends a browser whose forms logon was refused (`reason=2`: bad user or password).
pub const LOGON_REFUSED: &str = "/owa/auth/logon.aspx?replaceCurrent=1&reason=2&url=%2fowa%2f";
/// Where OWA sends a browser without a valid session (`reason=0`).
pub const LOGON_REQUIRED: &str = "/owa/auth/logon.aspx?replaceCurrent=1&reason=0&url=%2fowa%2f";

async fn owa_form_logon(
    State(s): State<Endpoints>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let user = form.get("username").map(String::as_str).unwrap_or("");
    let Some(password) = form.get("password") else {
        return redirect(LOGON_REFUSED, None);
    };
    if user.is_empty() {
        return redirect(LOGON_REFUSED, None);
    }
    let password = SecretString::from(password.clone());
    let result = s.server.owa_logon(user, &password).await;
    match (result.logon, result.session) {
        (Logon::Accepted { .. }, Some(session)) => {
            let destination = form
                .get("destination")
                .map(String::as_str)
                .filter(|d| {
                    let d = d.to_ascii_lowercase();
                    (d.starts_with("/owa") || d.starts_with("/ecp")) && !d.starts_with("//")
                })
                .unwrap_or("/owa/");
            let cookie = format!("{SESSION_COOKIE}={session}; path=/; secure; HttpOnly");
            redirect(destination, Some(cookie))
        }
        (Logon::Refused(_), _) => redirect(LOGON_REFUSED, None),
        (other, _) => failure(other),
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

async fn owa_mailbox(State(s): State<Endpoints>, headers: HeaderMap) -> Response {
    forms_page(&s, Protocol::Owa, &headers).await
}

async fn ecp_page(State(s): State<Endpoints>, headers: HeaderMap) -> Response {
    forms_page(&s, Protocol::Ecp, &headers).await
}

/// A forms-authenticated page (OWA or ECP): the `cadata` cookie is opened with the server
/// certificate's key and its credentials log on through the page's pool.
async fn forms_page(s: &Endpoints, protocol: Protocol, headers: &HeaderMap) -> Response {
    let Some(session) = session_cookie(headers) else {
        return redirect(LOGON_REQUIRED, None);
    };
    let expire = format!("{SESSION_COOKIE}=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT");
    match s.server.cookie_request(protocol, &session).await {
        Logon::Accepted { pool, pid, source } => {
            let mut response = accepted(&s.server, protocol, pool, pid, source);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Logon::Refused(_) => redirect(LOGON_REFUSED, Some(expire)),
        Logon::SessionUnknown => redirect(LOGON_REQUIRED, Some(expire)),
        Logon::ProtocolDisabled { reason, .. } => cas_refusal(&s.server, reason),
        other => failure(other),
    }
}

async fn logon_page() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><body><form action=\"/owa/auth.owa\" method=\"POST\">\
         <input name=\"username\"><input name=\"password\" type=\"password\">\
         <input type=\"hidden\" name=\"destination\" value=\"/owa/\">\
         </form></body></html>\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn basic_header_is_decoded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Q09SUFxib2I6cDpzcw=="),
        );
        let (user, pw) = basic_credentials(&headers).expect("decoded");
        assert_eq!(user, "CORP\\bob");
        assert_eq!(pw.expose_secret(), "p:ss");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(basic_credentials(&headers).is_none());
    }

    #[test]
    fn device_id_is_read_from_the_query() {
        let q = Some("User=bob&deviceid=Appl%2BF17X&DeviceType=iPhone&Cmd=Sync");
        assert_eq!(query_param(q, "DeviceId").as_deref(), Some("Appl+F17X"));
        assert_eq!(query_param(Some("DeviceId="), "DeviceId"), None);
        assert_eq!(query_param(Some("Cmd=Ping"), "DeviceId"), None);
        assert_eq!(query_param(None, "DeviceId"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; cadata=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
    }
}
