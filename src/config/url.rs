//! URLs of the services kiln talks to (metadata, load balancers, secret stores), checked with
//! the parser kiln's HTTP client uses: a URL `kiln check` accepts is one a request can be built
//! from at boot.

/// `http://` or `https://` and a URL the client can parse. `{placeholders}` (`{region}`,
/// `{local_ipv4}`, `{vault}`: filled at boot, and checked where they are allowed) stand for a
/// host name label here.
pub(super) fn check_http_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("give an http:// or https:// URL".into());
    }
    let filled = super::template::fill_any(url, "x");
    let parsed = reqwest::Url::parse(&filled).map_err(|e| format!("not a URL: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("not a URL: no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_the_client_parses_them() {
        for good in [
            "http://127.0.0.1:8500",
            "https://elasticloadbalancing.{region}.amazonaws.com",
            "http://{local_ipv4}:9100/readyz",
            "https://{vault}.vault.azure.net",
            "http://[fd00:ec2::254]",
        ] {
            assert_eq!(check_http_url(good), Ok(()), "{good}");
        }
        assert_eq!(
            check_http_url("ftp://x").unwrap_err(),
            "give an http:// or https:// URL"
        );
        assert_eq!(
            check_http_url("http://[::1:8500").unwrap_err(),
            "not a URL: invalid IPv6 address"
        );
        assert_eq!(check_http_url("http://").unwrap_err(), "not a URL: empty host");
        assert_eq!(
            check_http_url("http://a b").unwrap_err(),
            "not a URL: invalid international domain name"
        );
    }
}
