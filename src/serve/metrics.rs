//! `GET /metrics` on `[metrics] listen`, a listener of its own rather than the health port's:
//!
//! - Load balancers poll `/readyz` many times a second and it must answer at once. A scrape
//!   renders a few hundred series; on a thread of its own it never takes a health thread's
//!   turn, and a scraper that misbehaves (stalls, floods) fills this listener's small cap, never
//!   the health port's.
//! - The two have different audiences: the health port faces the load balancer's network, the
//!   metrics the monitoring's. An address of their own lets each be bound (and firewalled) where
//!   it belongs, and `/metrics` is off unless asked for.
//!
//! The bounds are the health port's (`health::serve`): `TCP_DEFER_ACCEPT`, 5 s for a request
//! head of at most 8 KiB, a cap on connections inside kiln's descriptor budget where the
//! stalest gives way. On top of them, one request per connection and each connection closed
//! [`EXCHANGE_TIMEOUT`] after its accept: a scraper that stops reading its answer holds its
//! socket and buffer no longer than that. Prometheus opens a new connection for each scrape
//! then, once every 15 s or so.

use super::health::{self, Answer, Lifetime, plain};
use super::slots::Slots;
use super::{Listeners, full_snapshot};
use crate::metrics::{self, Format, Recorder};
use crate::state::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest a connection lives, from its accept to its close: Prometheus' own scrape timeout is
/// 10 s by default.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

const LIFETIME: Lifetime = Lifetime {
    keep_alive: false,
    at_most: Some(EXCHANGE_TIMEOUT),
};

/// A bound metrics listener, not serving yet.
pub struct Bound {
    listener: std::net::TcpListener,
    pub slots: Arc<Slots>,
}

/// Binds `addr` now (an address in use refuses the boot before anything starts), with room for
/// `cap` connections.
pub fn bind(addr: SocketAddr, cap: usize) -> std::io::Result<Bound> {
    drop(std::net::TcpListener::bind(addr)?);
    Ok(Bound {
        listener: health::bind_reuseport(addr)?,
        slots: Slots::new(cap),
    })
}

/// Serves `/metrics` on a thread of its own until kiln exits. `listeners` is every listener's
/// connections, this one's included; `recorder` what happened between two scrapes.
pub fn start(
    bound: Bound,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    listeners: Listeners,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer: Answer = Arc::new(move |req| answer(req, &shared, &recorder, &listeners));
    let Bound { listener, slots } = bound;
    std::thread::Builder::new()
        .name("kiln-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => health::serve(listener, slots, answer, LIFETIME).await,
                    Err(e) => tracing::error!("metrics listener: {e}"),
                }
            })
        })?;
    Ok(())
}

fn answer(
    req: &Request<Incoming>,
    shared: &Shared,
    recorder: &Recorder,
    listeners: &Listeners,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found: try /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let accept = req.headers().get(ACCEPT).and_then(|a| a.to_str().ok());
    let format = Format::negotiate(accept);
    let snapshot = Arc::new(full_snapshot(shared, listeners));
    let body = metrics::render(snapshot, recorder, format);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}
