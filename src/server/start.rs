//! Running the server as a process: bind, warn about what will not work, serve until a shutdown
//! signal (`serve` lets the store's last writes land).

use crate::agents::Registry;
use crate::config::{Settings, LLM_UNREACHABLE_HINT};
use crate::state::{App, AppState, StartupError};

use super::{bind, raise_nofile_limit, serve, shutdown_signal};

/// Serves the rooms with `settings` until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings, registry: &Registry) -> Result<(), StartupError> {
    let addr = settings.addr;
    let app = App::open(settings, registry).await?;
    let bind_err = |e: std::io::Error| StartupError::Bind {
        addr: addr.to_string(),
        detail: e.to_string(),
    };
    log_nofile_limit(app.settings.max_connections);
    if !addr.ip().is_loopback() && !app.auth.is_on() {
        tracing::warn!(%addr, "listening beyond this machine with `auth: none`: anyone who reaches the port can run rooms and read every thread; set ROOMHOST_AUTH=keys or oidc");
    }
    let listener = bind(addr).map_err(bind_err)?;
    let rooms: Vec<&str> = app.rooms().iter().map(|r| r.config.id.as_str()).collect();
    tracing::info!(%addr, ?rooms, llm = ?app.settings.llm.base_urls, "roomhost listening");
    tokio::spawn(warn_if_llm_unreachable(app.clone()));
    // `serve` writes the store's last records and hands the runs over before it returns.
    serve(listener, app, shutdown_signal())
        .await
        .map_err(bind_err)
}

/// A server with no LLM starts (the page, threads and health work), but every run would fail:
/// say so once, with the URL it tried and the setting that changes it.
async fn warn_if_llm_unreachable(app: AppState) {
    if let Err(e) = app.llm.health().await {
        let url = app.settings.llm.base_urls.join(", ");
        tracing::warn!(%url, "the LLM at {url} does not answer, so runs will fail: {e}. To fix: {LLM_UNREACHABLE_HINT}");
    }
}

/// Every connection is a file: below the connection cap (plus room for backend calls and files),
/// accept fails before the cap is reached.
fn log_nofile_limit(max_connections: usize) {
    const LOW: u64 = 4096;
    match raise_nofile_limit() {
        Ok((before, after)) => {
            let wanted = (max_connections as u64).saturating_add(256).max(LOW);
            if after < wanted {
                tracing::warn!(
                    before,
                    after,
                    wanted,
                    "open-file limit is low for max_connections; raise the hard limit (ulimit -Hn)"
                );
            } else {
                tracing::info!(before, after, "open-file limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
