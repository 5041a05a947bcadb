//! The daemon as the backend of the local API's routes: each operation goes to
//! [`Daemon::handle`], which serves it here or forwards it to the Raft leader.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::Daemon;
use crate::api::docker::Host;
use crate::api::routes::{Backend, Router};
use crate::api::server::{ApiListener, ServerError};
use crate::api::{Request, Response};

/// Binds the API socket and serves it in a task; says on stdout when the socket answers.
pub async fn serve(
    daemon: Arc<Daemon>,
    socket: &Path,
    group: Option<u32>,
) -> Result<JoinHandle<()>, ServerError> {
    let api = ApiListener::bind(socket, group).await?;
    let router = Arc::new(Router::new(LocalApi(daemon), Host::read()));
    let path = api.path().display().to_string();
    let server = tokio::spawn(api.serve(router));
    // The socket answers from here on (the kernel queues connections until the task accepts):
    // say so, for scripts that wait for this line.
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "swarmnet daemon ready: API on unix://{path}");
        let _ = out.flush();
    }
    Ok(server)
}

/// The daemon, seen from the routes.
pub struct LocalApi(pub Arc<Daemon>);

impl Backend for LocalApi {
    fn call(&self, req: Request) -> impl Future<Output = Response> + Send {
        let daemon = self.0.clone();
        async move { daemon.handle(req).await }
    }

    fn events(&self) -> Result<crate::api::events::EventFeed, crate::api::ApiError> {
        self.0.event_feed()
    }

    fn capture(
        &self,
        ask: crate::api::capture::CaptureAsk,
    ) -> impl Future<
        Output = Result<tokio::sync::mpsc::Receiver<hyper::body::Bytes>, crate::api::ApiError>,
    > + Send {
        self.0.clone().capture(ask)
    }
}
