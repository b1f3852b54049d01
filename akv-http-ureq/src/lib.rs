//! `akv-http-ureq`: the blocking Azure Key Vault keys client. It executes what `akv-proto`
//! decides (requests, waits, token fetches) over its own HTTP/1.1 exchange (ureq's through a
//! proxy) with rustls, and nothing more.
//!
//! It must never decide protocol matters itself (retries, token refresh, algorithms belong
//! to `akv-proto`), never install a process-wide rustls provider (it lives inside other
//! people's processes), and never follow redirects.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod h1;
mod local;
mod resolver;
mod tcp;
mod tokens;
mod transport;

pub use akv_local::read_file_capped;
pub use akv_proto::{ProxySetting, TransportConfig};
pub use client::{ClientError, KeyClient};
pub use local::run_command;
pub use tokens::TokenProvider;
pub use transport::Transport;

/// Re-exported so that users need not depend on `akv-proto` for the common types.
pub use akv_proto;
