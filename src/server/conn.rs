//! Accepting and serving connections: header and body timeouts, a header size limit, a cap on
//! open connections, and the graceful drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tower::Layer;
use tower_http::timeout::RequestBodyTimeout;

use crate::config::Settings;

/// hyper's smallest allowed read buffer; heads are capped separately by `max_header_bytes`.
const MIN_BUF: usize = 8192;
/// How long a refused connection gets to read its 503 before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How long a refused client gets to send its request before the 503: hyper-based clients treat
/// an answer that arrives before their request as a broken connection.
const REFUSAL_WAIT: Duration = Duration::from_millis(200);
/// After an accept error (e.g. out of file descriptors), wait before the next accept rather than
/// spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Connections the kernel may hold for `accept`: its default of 128 overflows in a burst of
/// connects under load (the surplus SYNs are dropped and the clients retry after a second).
/// Linux caps it at `net.core.somaxconn` (4096 on current kernels).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` for [`serve`](super::serve) with a listen backlog for bursts of connections.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std's bind does: a restart can bind while the old process's connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `drain` resolves, then stops accepting and waits for every
/// open connection to finish its requests (idle ones close at once).
pub(super) async fn serve_connections(
    listener: TcpListener,
    router: Router,
    settings: &Settings,
    drain: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_header_size(settings.max_header_bytes)
        .max_buf_size(settings.max_header_bytes.max(MIN_BUF));
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let body_timeout = settings.body_timeout;
    let graceful = GracefulShutdown::new();
    tokio::pin!(drain);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut drain => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY each small SSE frame waits for the client's delayed ACK (~40 ms on
        // Linux) whenever the previous frame is still unacknowledged.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(tcp));
            continue;
        };
        // A cloned `Router` shares its routes; only the body timeout wrapper is new.
        // Each request knows its client's address (the detached budget of `auth: none`).
        let routes = Extension(ConnectInfo(peer)).layer(router.clone());
        let service = TowerToHyperService::new(RequestBodyTimeout::new(routes, body_timeout));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers 503 once the client has sent its request (or after `REFUSAL_WAIT`) and closes,
/// reading what the client sent meanwhile so the close is not a reset that could hide the answer.
async fn refuse(mut tcp: TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_WAIT, tcp.read(&mut sink)).await;
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": "the server is at its connection limit; retry in a moment",
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let linger = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        while tcp.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, linger).await;
}

/// Raises the soft open-file limit to the hard limit (every connection is a file); returns
/// (before, after).
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((before, limit.rlim_cur))
}
