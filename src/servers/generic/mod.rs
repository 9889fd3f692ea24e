//! The generic kind: any server; the argv and environment pass unchanged, and only the profile's
//! own rules apply.

use crate::error::Result;
use crate::servers::{Kind, Prepared, Request};

pub struct Generic;

impl Kind for Generic {
    fn prepare(&self, req: &Request<'_>) -> Result<Prepared> {
        if let Some(r) = req.supervise.ready.as_ref().filter(|r| r.from_server_flags) {
            return Err(req.loaded.err(
                r.http_get.span(),
                "supervise.ready.from_server_flags needs a server kind whose flags stockade reads \
                 (server.kind = \"triton\", \"mlserver\" or \"bentoml\")",
            ));
        }
        Ok(Prepared::passthrough(req.args))
    }
}
