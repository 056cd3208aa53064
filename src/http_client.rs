//! Where every HTTP client of kiln starts (metadata, probes, load balancer APIs): rustls with the
//! ring provider, installed once per process, no proxy (an `http_proxy` in kiln's environment must
//! never see or redirect a metadata request or a health check) and kiln's user agent.

/// A builder with kiln's defaults; callers add timeouts, redirects and trust roots.
pub fn builder() -> reqwest::ClientBuilder {
    // reqwest builds a TLS config even for a plain-HTTP client, and that needs a crypto provider.
    // An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
}

/// reqwest's errors nest their cause; the innermost one is what a person needs to read.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut source = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Over the limit: the peer's answer is not what kiln asked for.
    TooLong(usize),
    Read(reqwest::Error),
}

/// The body of `response`, refusing one over `limit` bytes: a peer decides how long its answer
/// is, kiln decides how much of it it holds.
pub async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLong(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
