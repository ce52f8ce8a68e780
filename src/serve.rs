//! Serves a target's router over HTTP or HTTPS (rustls) until shutdown. Every connection
//! carries its peer address so access control can check token allowlists.
//!
//! A response to a request whose body was not read to its end (a token refused before the
//! upload, a body over the limit) says `Connection: close`. Hyper closes such a connection
//! anyway when the rest of the body has not arrived yet; without the header a keep-alive
//! client (an agent, Prometheus remote write) sends its next request on a socket the server is
//! closing and sees "peer disconnected" instead of an answer.

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tingzhen_core::config::TlsConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// A TLS handshake that has not finished by then is dropped, so idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen} (is another tingzhen running?)"))
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<&TlsConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let router = router.layer(middleware::from_fn(close_if_body_unread));
    let Some(tls) = tls else {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
            .context("HTTP server failed")?;
        return Ok(());
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(rustls_config(tls)?));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // The watch guard is dropped inside, so this future (and `serve`) stays `Send`.
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = router.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("some connections did not finish within 10 s"),
    }
    Ok(())
}

/// Marks the response `Connection: close` when the request declared a body and the handler
/// answered without reading it to its end (see the module header).
async fn close_if_body_unread(req: Request, next: Next) -> Response {
    if !declares_body(req.headers()) {
        return next.run(req).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let req = req.map(|inner| Body::new(EndWatched { inner, finished: finished.clone() }));
    let mut resp = next.run(req).await;
    if !finished.load(Ordering::Acquire) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn declares_body(headers: &HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::trim);
    headers.contains_key(header::TRANSFER_ENCODING) || length.is_some_and(|l| l != "0")
}

/// A request body that records when it has been read to its end.
struct EndWatched {
    inner: Body,
    finished: Arc<AtomicBool>,
}

impl HttpBody for EndWatched {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub fn rustls_config(tls: &TlsConfig) -> anyhow::Result<rustls::ServerConfig> {
    let certs_pem =
        std::fs::read(&tls.cert_file).with_context(|| format!("cannot read server.tls.cert_file {}", tls.cert_file))?;
    let key_pem =
        std::fs::read(&tls.key_file).with_context(|| format!("cannot read server.tls.key_file {}", tls.key_file))?;
    let certs = rustls_pemfile::certs(&mut certs_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("server.tls.cert_file {}: not a PEM certificate chain", tls.cert_file))?;
    anyhow::ensure!(!certs.is_empty(), "server.tls.cert_file {}: no certificate found", tls.cert_file);
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("server.tls.key_file {}: not a PEM private key", tls.key_file))?
        .with_context(|| format!("server.tls.key_file {}: no private key found", tls.key_file))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol setup")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls: certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// `/refuse` answers without touching the body, as the token check does; `/read` reads it.
    async fn start() -> (SocketAddr, watch::Sender<bool>) {
        let router = Router::new()
            .route("/refuse", post(|| async { StatusCode::UNAUTHORIZED }).get(|| async { StatusCode::UNAUTHORIZED }))
            .route("/read", post(|body: axum::body::Bytes| async move { format!("read {}", body.len()) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move { serve(listener, router, None, stop_rx).await.unwrap() });
        (addr, stop_tx)
    }

    /// Reads one response (headers and a Content-Length body) and returns its head, lowercased.
    async fn response_head(conn: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(conn.read(&mut byte).await.unwrap(), 1, "connection closed inside a response head");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.unwrap();
        head
    }

    #[tokio::test]
    async fn a_refusal_before_the_body_closes_the_connection_and_says_so() {
        let (addr, _stop) = start().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        // The body is announced but held back, as a client whose upload is still in flight.
        conn.write_all(b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n").await.unwrap();
        let head = response_head(&mut conn).await;
        assert!(head.starts_with("http/1.1 401"), "{head}");
        assert!(head.contains("connection: close"), "a client cannot know this socket is closing: {head}");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the server kept the connection open: {read:?}");
    }

    #[tokio::test]
    async fn answers_that_read_the_body_or_had_none_keep_the_connection() {
        let (addr, _stop) = start().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
        let head = response_head(&mut conn).await;
        assert!(head.starts_with("http/1.1 200") && !head.contains("connection: close"), "{head}");
        conn.write_all(b"GET /refuse HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let head = response_head(&mut conn).await;
        assert!(head.starts_with("http/1.1 401") && !head.contains("connection: close"), "{head}");
        conn.write_all(b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        let head = response_head(&mut conn).await;
        assert!(head.starts_with("http/1.1 401") && !head.contains("connection: close"), "{head}");
        let chunked = b"POST /read HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        conn.write_all(chunked).await.unwrap();
        let head = response_head(&mut conn).await;
        assert!(head.starts_with("http/1.1 200") && !head.contains("connection: close"), "{head}");
    }
}
