//! `GET /livez` and `GET /readyz`. Load balancers poll these many times a second, so the plain
//! answers are a status line and one word; `?verbose` or `Accept: application/json` gives a small
//! JSON body naming every unit's state.

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
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// `/livez` fails when the supervisor loop has not ticked for this long.
const LIVENESS_WINDOW: Duration = Duration::from_secs(5);

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
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
            let snapshot = shared.snapshot();
            let ready = snapshot.phase == Phase::Ready;
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            if verbose {
                let units: Vec<_> = snapshot
                    .services
                    .iter()
                    .map(|u| serde_json::json!({ "unit": u.unit, "state": u.state, "ready": u.ready }))
                    .collect();
                json(
                    code,
                    serde_json::json!({
                        "ready": ready,
                        "phase": snapshot.phase,
                        "reason": snapshot.reason,
                        "units": units,
                        "seal": snapshot.seal.as_ref().and_then(|s| s.root_hash.clone()),
                    }),
                )
            } else {
                plain(code, phase_word(snapshot.phase))
            }
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
