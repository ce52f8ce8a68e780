//! Serves a target's router over HTTP or HTTPS (rustls) until shutdown. Every connection
//! carries its peer address so access control can check token allowlists.

use anyhow::Context;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
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
            _ = shutdown.wait_for(|stop| *stop) => break,
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
