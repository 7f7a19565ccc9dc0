//! The HTTP endpoints: `/metrics` (the Prometheus text exposition), `/healthz` (the process
//! answers) and `/readyz` (every pipeline ready: 200, else 503 with the reasons), served by
//! hyper on a thread of their own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text;

use super::Registry;

/// How long a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

const TEXT: &str = "text/plain; charset=utf-8";

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` from a background thread; returns
/// the address bound (`addr` may ask for port 0).
pub fn serve(addr: &str, registry: Arc<Registry>) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("metrics".to_string())
        .spawn(move || runtime.block_on(accept(listener, registry)))?;
    Ok(local)
}

async fn accept(listener: std::net::TcpListener, registry: Arc<Registry>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve metrics");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics connection failed");
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(|request: Request<hyper::body::Incoming>| {
                let response = respond(request.method(), request.uri().path(), &registry);
                async move { Ok::<_, Infallible>(response) }
            });
            // One request per connection, closed after the response (`connection: close`), as
            // scrapers and probes use it: a kept-alive connection would make a client that
            // reads to the end wait for the header timeout.
            let connection = http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics request failed");
            }
        });
    }
}

fn respond(method: &Method, path: &str, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/metrics") => match registry.render() {
            Ok(text) => (StatusCode::OK, prometheus_text::CONTENT_TYPE, text),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                format!("cannot encode the metrics: {e}\n"),
            ),
        },
        (&Method::GET, "/healthz") => (StatusCode::OK, TEXT, "ok\n".to_string()),
        (&Method::GET, "/readyz") => match registry.readiness() {
            Ok(body) => (StatusCode::OK, TEXT, body),
            Err(body) => (StatusCode::SERVICE_UNAVAILABLE, TEXT, body),
        },
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics, /healthz or /readyz\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
