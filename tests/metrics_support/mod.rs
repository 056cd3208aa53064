//! What the metrics tests share: the example with `[metrics]`, and a scrape.

use std::net::SocketAddr;
use testkit::example::Example;
use testkit::wait::{Response, http_get_with};

/// What Prometheus 2 sends in `Accept` when it scrapes.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Turns `/metrics` on in the example, on a free loopback port; returns its address.
pub fn with_metrics(ex: &Example) -> SocketAddr {
    let addr = testkit::net::free_addr();
    ex.edit_toml(|t| {
        let mut metrics = toml::Table::new();
        metrics.insert("listen".into(), addr.to_string().into());
        t.insert("metrics".into(), metrics.into());
    });
    addr
}

/// `GET /metrics`, with `Accept` when given; panics on a transport error.
pub fn scrape(addr: SocketAddr, accept: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    http_get_with(&format!("http://{addr}/metrics"), &headers).unwrap_or_else(|e| panic!("scrape: {e}"))
}

/// The value of the series written exactly as `series` (name and labels) in a text exposition.
pub fn value_of(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}
