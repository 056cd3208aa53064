//! The HTTP clients kiln builds, one preset per kind of peer. All start from [`builder`]: rustls
//! with the ring provider, installed once per process, no proxy (an `http_proxy` in kiln's
//! environment must never see or redirect a metadata request or a health check), kiln's user
//! agent, and no redirects (a peer that redirects is answered by its status: a redirect would
//! carry a custom credential header, such as `X-Consul-Token`, to wherever it points).
//!
//! The probes' HTTP check is not here: it opens one connection of its own per check
//! (`probe::http`), and the runner owns its timing.

use std::time::Duration;

/// A builder with kiln's defaults; the presets below add what their peers need.
pub fn builder() -> reqwest::ClientBuilder {
    // reqwest builds a TLS config even for a plain-HTTP client, and that needs a crypto provider.
    // An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
}

/// A metadata service on a link-local address: plain HTTP, no gzip, no trust roots (it never
/// speaks TLS, and loading them would cost milliseconds at every boot).
///
/// Every request gets a connection of its own. Metadata servers that are not hyper (Python's
/// `http.server`, others) write an answer's head and body in two segments with Nagle's
/// algorithm on: on a reused connection the body then waits for the client's delayed ACK,
/// about 40 ms per request, while a fresh connection acknowledges at once (quick-ack mode). A
/// boot makes a handful of requests to a link-local server, where a connection costs well under
/// a millisecond. Timeouts are per request ([`super::exchange`]).
pub fn link_local() -> Result<reqwest::Client, String> {
    build(
        builder()
            .pool_max_idle_per_host(0)
            .no_gzip()
            .tls_certs_only(std::iter::empty()),
    )
}

/// A cloud API over HTTPS (AWS, GCP Secret Manager, Azure Key Vault) or the Consul agent: trust
/// roots, a pooled connection, [`super::CONNECT_TIMEOUT`] to connect. The request timeout is set
/// per request ([`super::exchange`], or `RequestBuilder::timeout`).
pub fn api() -> Result<reqwest::Client, String> {
    build(builder().connect_timeout(super::CONNECT_TIMEOUT))
}

/// The app's own listener on this instance (`[warm]`): plain HTTP, no gzip (the warm-up is for
/// the app, not the compression), no trust roots, up to `connections` kept open between requests
/// as a browser keeps its own. The client goes when the warm-up ends, and its connections with it.
pub fn local(connections: usize, connect_timeout: Duration) -> Result<reqwest::Client, String> {
    build(
        builder()
            .pool_max_idle_per_host(connections)
            .connect_timeout(connect_timeout)
            .no_gzip()
            .tls_certs_only(std::iter::empty()),
    )
}

/// Other kilns' `/readyz` (`kiln fleet`): connected and answered within `timeout`, or reported as
/// not answering.
pub fn peers(timeout: Duration) -> Result<reqwest::Client, String> {
    build(builder().timeout(timeout).connect_timeout(timeout))
}

fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    builder
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {}", super::root_cause(&e)))
}
