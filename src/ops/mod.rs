//! Operations: the HTTP endpoint for Prometheus and health checks.
//!
//! [`serve`] answers, over hyper's HTTP/1 server:
//! - `/metrics`: every metric of a `prometheus-client` [`Registry`] in the
//!   OpenMetrics text format (Prometheus scrapes it natively);
//! - `/healthz`: 200 while the process runs;
//! - `/readyz`: 200 or 503 with the reason, from the caller's readiness check;
//! - `/status`: the caller's JSON status document.
//!
//! The endpoint knows nothing of the engine: whoever runs a replication hands
//! it a registry (with the engine's collector in it) and two closures. The
//! standard `process_*` metrics come from [`ProcessCollector`].

mod process;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

pub use process::{cpu_seconds, peak_resident_bytes, ProcessCollector};

/// Readiness: `Ok` when ready, else why not.
pub type ReadyFn = Box<dyn Fn() -> Result<(), String> + Send + Sync>;
/// The `/status` document (JSON).
pub type StatusFn = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the endpoint serves.
pub struct Endpoints {
    /// Metrics for `/metrics`.
    pub registry: Registry,
    /// `/readyz`.
    pub ready: ReadyFn,
    /// `/status`.
    pub status: StatusFn,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").finish_non_exhaustive()
    }
}

/// The OpenMetrics content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `endpoints` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint listening (/metrics, /healthz, /readyz, /status)");
    }
    loop {
        let (sock, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "metrics endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(answer(&endpoints, req.uri().path())) }
            });
            // One response per connection (as every scraper and probe expects of
            // a small endpoint): a client that reads to the end is not kept waiting.
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .header_read_timeout(Duration::from_secs(5))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(sock), service);
            if let Err(e) = conn.await {
                debug!(error = %e, "metrics endpoint connection ended");
            }
        });
    }
}

/// The response to a GET of `path`.
fn answer(e: &Endpoints, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => match render(&e.registry) {
            Ok(text) => (StatusCode::OK, OPENMETRICS, text),
            Err(why) => (StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("{why}\n")),
        },
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => match (e.ready)() {
            Ok(()) => (StatusCode::OK, "text/plain", "ready\n".to_string()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        "/status" => (StatusCode::OK, "application/json", format!("{:#}\n", (e.status)())),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz, /readyz or /status\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// The OpenMetrics text of a registry.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        // To the end: the endpoint closes the connection after its answer.
        tokio::time::timeout(std::time::Duration::from_secs(2), s.read_to_string(&mut out))
            .await
            .expect("the endpoint closes the connection after one answer")
            .unwrap();
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or_default();
        (status, head.to_string(), body.to_string())
    }

    #[tokio::test]
    async fn serves_metrics_health_readiness_and_status() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ready.clone();
        let endpoints = Arc::new(Endpoints {
            registry,
            ready: Box::new(move || {
                if r.load(std::sync::atomic::Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            }),
            status: Box::new(|| serde_json::json!({"members": 1})),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, endpoints));
        let (code, head, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(head.to_lowercase().contains("application/openmetrics-text"), "{head}");
        assert!(body.contains("process_resident_memory_bytes "), "{body}");
        assert!(body.contains("process_cpu_seconds_total "), "{body}");
        assert!(body.trim_end().ends_with("# EOF"), "{body}");
        assert_eq!(get(addr, "/healthz").await.0, 200);
        let (code, _, body) = get(addr, "/readyz").await;
        assert_eq!((code, body.as_str()), (503, "not ready: not yet\n"));
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let (code, _, body) = get(addr, "/status").await;
        assert_eq!(code, 200);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["members"], 1);
        assert_eq!(get(addr, "/nope").await.0, 404);
        server.abort();
    }
}
