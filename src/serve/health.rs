//! `GET /livez` and `GET /readyz`. Load balancers poll these many times a second, so the plain
//! answers are a status line and one word; `?verbose` or `Accept: application/json` gives a small
//! JSON body naming every unit's state.
//!
//! The endpoint runs on threads of its own, one single-threaded runtime per CPU (at most
//! [`MAX_THREADS`]), each with its own `SO_REUSEPORT` listener on the same address: the kernel
//! spreads connections, no task ever changes threads, and a flood of health checks never delays
//! the supervisor's loop.

use crate::state::{Phase, Shared};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// `/livez` fails when the supervisor loop has not ticked for this long.
const LIVENESS_WINDOW: Duration = Duration::from_secs(5);

const MAX_THREADS: usize = 4;

/// Binds one listener per serving thread (so an address in use is reported now) and starts them.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<()> {
    // SO_REUSEPORT would also let a second kiln share the port unnoticed: a plain bind first
    // reports an address that is already taken.
    drop(std::net::TcpListener::bind(addr)?);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS);
    let listeners = (0..threads)
        .map(|_| bind_reuseport(addr))
        .collect::<std::io::Result<Vec<_>>>()?;
    for (n, listener) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("kiln-health-{n}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, shared).await,
                        Err(e) => tracing::error!("health listener: {e}"),
                    }
                })
            })?;
    }
    Ok(())
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, sockopt};
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    match addr {
        SocketAddr::V4(v4) => socket::bind(raw, &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => socket::bind(raw, &SockaddrIn6::from(v6))?,
    }
    socket::listen(
        &fd,
        socket::Backlog::new(1024).unwrap_or(socket::Backlog::MAXCONN),
    )?;
    Ok(std::net::TcpListener::from(fd))
}

/// Serves one listener until its runtime ends.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("health listener: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = answer(&req, &shared);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let verbose = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "verbose" || p == "verbose=1"))
        || req
            .headers()
            .get(ACCEPT)
            .is_some_and(|a| a.as_bytes().starts_with(b"application/json"));
    match req.uri().path() {
        "/livez" => {
            let alive = shared.alive(LIVENESS_WINDOW);
            let code = if alive {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            if verbose {
                json(code, serde_json::json!({ "alive": alive }))
            } else {
                plain(code, if alive { "alive\n" } else { "stalled\n" })
            }
        }
        "/readyz" => {
            let phase = shared.phase();
            let code = if phase == Phase::Ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            if !verbose {
                return plain(code, phase_word(phase));
            }
            let snapshot = shared.snapshot();
            let units: Vec<_> = snapshot
                .services
                .iter()
                .map(|u| serde_json::json!({ "unit": u.unit, "state": u.state, "ready": u.ready }))
                .collect();
            // What `kiln fleet` needs of every instance: which image (seal, release) and which
            // one the launch configuration pins (expected), which instance, how long up, and
            // whether the load balancer has it.
            let seal = snapshot.seal.as_ref();
            json(
                code,
                serde_json::json!({
                    "ready": phase == Phase::Ready,
                    "phase": phase,
                    "reason": snapshot.reason,
                    "units": units,
                    "seal": seal.and_then(|s| s.root_hash.clone()),
                    "release": seal.and_then(|s| s.release.clone()),
                    "expected": seal.and_then(|s| s.expected.clone()),
                    "instance_id": snapshot.instance.as_ref().and_then(|i| i.instance_id.clone()),
                    "uptime_ms": shared.elapsed().as_millis() as u64,
                    "lb": snapshot.lb.as_ref().map(|lb| lb.state),
                }),
            )
        }
        _ => plain(StatusCode::NOT_FOUND, "not found: try /livez or /readyz\n"),
    }
}

fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Booting => "booting\n",
        Phase::Starting => "starting\n",
        Phase::Ready => "ready\n",
        Phase::Degraded => "degraded\n",
        Phase::Failed => "failed\n",
        Phase::Stopping => "stopping\n",
        Phase::Stopped => "stopped\n",
    }
}

fn plain(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn json(code: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
