//! `akv-http-hyper`: the async Azure Key Vault keys client for tokio programs. It executes
//! what `akv-proto` decides over hyper, hyper-rustls and tokio, and nothing more: it behaves
//! exactly like the blocking `akv-http-ureq` backend (one scenario table tests both).
//!
//! It must never decide protocol matters itself, never install a process-wide rustls
//! provider, never follow redirects, and never block the runtime's threads.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod connector;
mod local;
mod tokens;
mod transport;

pub use akv_proto::{ProxySetting, TransportConfig};
pub use client::{ClientError, KeyClient};
pub use tokens::TokenProvider;
pub use transport::Transport;

/// Re-exported so that users need not depend on `akv-proto` for the common types.
pub use akv_proto;
