//! The daemon as the backend of the local API's routes: each operation goes to
//! [`Daemon::handle`], which serves it here or forwards it to the Raft leader.

use std::future::Future;
use std::sync::Arc;

use super::Daemon;
use crate::api::routes::Backend;
use crate::api::{Request, Response};

/// The daemon, seen from the routes.
pub struct LocalApi(pub Arc<Daemon>);

impl Backend for LocalApi {
    fn call(&self, req: Request) -> impl Future<Output = Response> + Send {
        let daemon = self.0.clone();
        async move { daemon.handle(req).await }
    }
}
