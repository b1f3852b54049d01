//! Token sources (PROTOCOL.md section 3) as data: which source to use, the requests each one
//! makes, and how their answers become an [`AccessToken`](crate::AccessToken). Like the
//! operation driver, a [`TokenFetch`] performs no I/O: it asks its caller to send a request,
//! read a file or run a command, and reads no environment variable (the caller passes a
//! lookup function).
//!
//! One file per concern:
//! - [`source`](self): the configuration types ([`CredentialSource`] and its parts);
//! - `auto`: choosing a source from settings and environment, as the Azure SDKs do;
//! - `fetch`: the [`TokenFetch`] machine shared by every source (budget, retries, chains);
//! - `supply`: a process's [`TokenSupply`] (cache, source, what worked), one fetch at a time;
//! - `managed_identity`, `arc`, `client_secret`, `workload_identity`, `azure_cli`,
//!   `static_token`: each source's request, answer and rules;
//! - `parse`: reading token answers, shared by the sources;
//! - `wire`: the small HTTP pieces the sources build their requests from.

mod arc;
mod auto;
mod azure_cli;
mod client_secret;
mod fetch;
mod managed_identity;
mod parse;
mod source;
mod static_token;
mod supply;
#[cfg(test)]
mod test_support;
mod wire;
mod workload_identity;

pub use arc::{ARC_HIMDS_FILE, ARC_KEY_FOLDER, ARC_MAX_KEY_LEN, arc_key_path};
pub use auto::{CredentialInputs, SourceChoice};
pub use azure_cli::CommandOutput;
#[cfg(feature = "fuzzing")]
pub(crate) use azure_cli::parse_cli_output;
pub use fetch::{FetchPoll, TokenFetch};
pub use managed_identity::IMDS_ORIGIN;
pub use parse::{jwt_expiry, parse_token_response};
pub use source::{CredentialSource, ManagedIdentityEndpoint, Secret, ServiceUrl, UserAssignedId};
pub use supply::{FetchClaim, Supply, TokenSupply};
pub use workload_identity::MAX_ASSERTION_LEN;
