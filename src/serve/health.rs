//! `GET /livez` and `GET /readyz`. Load balancers poll these many times a second, so the plain
//! answers are a status line and one word; `?verbose` or `Accept: application/json` gives a small
//! JSON body naming every unit's state.
//!
//! The endpoint runs on threads of its own, one single-threaded runtime per CPU (at most
//! [`MAX_THREADS`]), each with its own `SO_REUSEPORT` listener on the same address: the kernel
//! spreads connections, no task ever changes threads, and a flood of health checks never delays
//! the supervisor's loop.
//!
//! Hostile clients are bounded: each thread holds its share of a cap on open connections (at the
//! cap the stalest connection gives way, see [`super::slots`]); the kernel hands kiln a connection
//! only once its first bytes arrived ([`defer_accept`]); one that has not sent a whole request
//! head within [`IDLE_TIMEOUT`] is closed (one that sends nothing, a slowloris, an idle keep-alive
//! connection); and a request head may not outgrow hyper's smallest buffer.

use super::slots::Slots;
use crate::state::{Phase, Shared};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// `/livez` fails when the supervisor loop has not ticked for this long.
const LIVENESS_WINDOW: Duration = Duration::from_secs(5);

const MAX_THREADS: usize = 4;

/// A connection whose next request head has not fully arrived within this time is closed. Load
/// balancers send theirs at once; keep-alive pollers come back more often than this or reconnect.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// hyper's smallest buffer: a request head that does not fit is refused. `GET /readyz` with the
/// headers of any load balancer takes a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// How long a connection of a bounded listener may live, beyond the limits on request heads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lifetime {
    /// Serve further requests on the connection (load balancers poll on one).
    pub keep_alive: bool,
    /// Close the connection this long after its accept, whatever it is doing: a client that
    /// stops reading its answer holds nothing for longer. None: no bound but the idle timeout.
    pub at_most: Option<Duration>,
}

/// The health port's connections: kept alive while polled, closed when idle.
const HEALTH_LIFETIME: Lifetime = Lifetime {
    keep_alive: true,
    at_most: None,
};

/// Binds one listener per serving thread (so an address in use is reported now) and starts them.
/// `cap` bounds the connections open at once, shared evenly by the threads. Returns each
/// thread's connections, for status.
pub fn start(addr: SocketAddr, shared: Arc<Shared>, cap: usize) -> std::io::Result<Vec<Arc<Slots>>> {
    // SO_REUSEPORT would also let a second kiln share the port unnoticed: a plain bind first
    // reports an address that is already taken.
    drop(std::net::TcpListener::bind(addr)?);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS);
    let listeners = (0..threads)
        .map(|_| bind_reuseport(addr))
        .collect::<std::io::Result<Vec<_>>>()?;
    let per_thread = (cap / threads).max(1);
    let mut all_slots = Vec::with_capacity(threads);
    // Answered at once, from the snapshot: nothing to wait for.
    let answer = move |req: &Request<Incoming>| std::future::ready(answer(req, &shared));
    for (n, listener) in listeners.into_iter().enumerate() {
        let answer = answer.clone();
        let slots = Slots::new(per_thread);
        all_slots.push(slots.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("kiln-health-{n}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, slots, answer, HEALTH_LIFETIME).await,
                        Err(e) => tracing::error!("health listener: {e}"),
                    }
                })
            })?;
    }
    Ok(all_slots)
}

pub(super) fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
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
    defer_accept(&fd, IDLE_TIMEOUT)?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    match addr {
        SocketAddr::V4(v4) => socket::bind(raw, &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => socket::bind(raw, &SockaddrIn6::from(v6))?,
    }
    // The longest queue the kernel allows (`net.core.somaxconn`, 4096 by default): a connection
    // that finds the queue full has its SYN dropped, and the client tries again only after a
    // second, then three: a load balancer's check times out. A flood that holds more connections
    // than kiln's cap plus the queues of its listeners (one per serving thread) can still fill
    // them; with 1024 here, 5,000 of wrk's did (README, "Hostile or careless clients").
    socket::listen(&fd, socket::Backlog::MAXALLOWABLE)?;
    Ok(std::net::TcpListener::from(fd))
}

/// The kernel holds a new connection until its first bytes arrive (`TCP_DEFER_ACCEPT`, as nginx's
/// `deferred` and HAProxy's `defer-accept`), for about `wait`: a connection that sends nothing
/// takes no descriptor of kiln's meanwhile, and a connection kiln accepts has its request in hand,
/// so it is answered in the same turn, before any later arrival could push it out at the cap.
fn defer_accept(fd: &OwnedFd, wait: Duration) -> std::io::Result<()> {
    let seconds = libc::c_int::try_from(wait.as_secs()).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket, and a pointer to a c_int with its size.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Serves one listener until its runtime ends: at most `slots`' cap of connections, each
/// within `lifetime`, each request answered by the future `answer` makes of it (at once for the
/// health port, after reading php-fpm's pages for `/metrics`).
pub(super) async fn serve<A, F>(listener: TcpListener, slots: Arc<Slots>, answer: A, lifetime: Lifetime)
where
    A: Fn(&Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                tracing::warn!("listener {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut slot = slots.admit();
        let answer = answer.clone();
        tokio::spawn(async move {
            let answered = slot.answered();
            let service = service_fn(move |req| {
                let response = answer(&req);
                let answered = answered.clone();
                async move {
                    let response = response.await;
                    answered.now();
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(lifetime.keep_alive)
                .serve_connection(TokioIo::new(stream), service);
            let at_most = async {
                match lifetime.at_most {
                    Some(at_most) => tokio::time::sleep(at_most).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = connection => {}
                _ = slot.evicted() => {}
                _ = at_most => {}
            }
        });
        // Let the new connection read the request that usually came with it before the next
        // accept: in a flood, a burst of accepts could otherwise evict it unanswered.
        tokio::task::yield_now().await;
    }
}

fn answer(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/livez" => livez(shared, verbose(req)),
        "/readyz" => readyz(shared, verbose(req)),
        AZURE_HEALTH => azure_health(shared.phase()),
        _ => plain(StatusCode::NOT_FOUND, "not found: try /livez or /readyz\n"),
    }
}

/// `?verbose` (or `verbose=1`), or an `Accept` of JSON: the answer in JSON, with details.
fn verbose(req: &Request<Incoming>) -> bool {
    req.uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "verbose" || p == "verbose=1"))
        || req
            .headers()
            .get(ACCEPT)
            .is_some_and(|a| a.as_bytes().starts_with(b"application/json"))
}

/// 200 while the main loop ticks, 503 once it has stalled.
fn livez(shared: &Shared, verbose: bool) -> Response<Full<Bytes>> {
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

/// 200 when ready, 503 otherwise; the phase in a word, or in JSON the readiness report
/// (`readiness::report`, also the control socket's `ready`).
fn readyz(shared: &Shared, verbose: bool) -> Response<Full<Bytes>> {
    let phase = shared.phase();
    let code = if phase == Phase::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !verbose {
        return plain(code, phase_word(phase));
    }
    json(code, super::readiness::report(shared, phase))
}

/// Where Azure's Application Health extension (rich health states) asks.
pub const AZURE_HEALTH: &str = "/azure/health";

/// The Application Health extension's rich health states: a 2xx with
/// `{"ApplicationHealthState": "Healthy"}` or `"Unhealthy"`; anything else is Unknown.
///
/// Ready is Healthy. Degraded (a service not ready now), failed (a refused boot), stopping and
/// stopped are Unhealthy: the instance does not serve, and instance repairs may replace it.
/// Booting and starting answer 503, which the extension counts as Unknown: while it is
/// *Initializing* (its grace period after the instance starts) only Healthy or Unhealthy end
/// that, so a boot within the grace period is neither repaired nor counted by a rolling upgrade;
/// a boot that outlasts it is Unknown, which both treat as Unhealthy. The body holds nothing but
/// the documented key: the phase is `/readyz?verbose`'s to tell.
fn azure_health(phase: Phase) -> Response<Full<Bytes>> {
    let state = match phase {
        Phase::Ready => "Healthy",
        Phase::Degraded | Phase::Failed | Phase::Stopping | Phase::Stopped => "Unhealthy",
        Phase::Booting | Phase::Starting => {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "phase": phase }),
            );
        }
    };
    json(
        StatusCode::OK,
        serde_json::json!({ "ApplicationHealthState": state }),
    )
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

pub(super) fn plain(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response<Full<Bytes>>) -> (u16, serde_json::Value) {
        use http_body_util::BodyExt;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn each_phase_maps_to_a_rich_health_state() {
        for phase in Phase::ALL {
            let (status, json) = body(azure_health(phase)).await;
            let want = match phase {
                Phase::Ready => Some("Healthy"),
                Phase::Booting | Phase::Starting => None,
                _ => Some("Unhealthy"),
            };
            match want {
                Some(state) => {
                    assert_eq!(status, 200, "{phase:?}");
                    assert_eq!(
                        json,
                        serde_json::json!({ "ApplicationHealthState": state }),
                        "{phase:?}"
                    );
                }
                None => {
                    assert_eq!(status, 503, "{phase:?}: the extension reads Unknown");
                    assert!(json.get("ApplicationHealthState").is_none(), "{phase:?}");
                }
            }
        }
    }
}
