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

use super::health::{self, Lifetime, plain};
use super::phpfpm::Pools;
use super::slots::Slots;
use super::{Listeners, full_snapshot};
use crate::metrics::{self, Format, Recorder};
use crate::state::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::future::Future;
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
/// connections, this one's included; `recorder` what happened between two scrapes; `pools`
/// php-fpm's status pages, read at each scrape.
pub fn start(
    bound: Bound,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    listeners: Listeners,
    pools: Pools,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let scrape = Arc::new(Scrape {
        shared,
        recorder,
        listeners,
        pools,
    });
    let answer = move |req: &Request<Incoming>| answer(req, scrape.clone());
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

/// What a scrape reads.
struct Scrape {
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    listeners: Listeners,
    pools: Pools,
}

/// The request is judged at once; the exposition is made once php-fpm's pages are read (each
/// within its timeout, all at once), while this thread goes on serving other connections.
fn answer(
    req: &Request<Incoming>,
    scrape: Arc<Scrape>,
) -> impl Future<Output = Response<Full<Bytes>>> + use<> {
    let refused = if req.uri().path() != "/metrics" {
        Some(plain(StatusCode::NOT_FOUND, "not found: try /metrics\n"))
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        Some(plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"))
    } else {
        None
    };
    let accept = req.headers().get(ACCEPT).and_then(|a| a.to_str().ok());
    let format = Format::negotiate(accept);
    async move {
        if let Some(refused) = refused {
            return refused;
        }
        let snapshot = full_snapshot(&scrape.shared, &scrape.listeners, &scrape.pools).await;
        let body = metrics::render(Arc::new(snapshot), &scrape.recorder, format);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        response
    }
}
