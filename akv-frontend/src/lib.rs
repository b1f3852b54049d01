//! What every OpenSSL front end of e_akv shares: the engine (`akv-engine`, OpenSSL 3) and
//! the provider (`akv-provider`, OpenSSL 3 and 4) differ only in how OpenSSL calls them.
//! Here: the settings table and its values, the process's key clients (the blocking one, and
//! the async one with its runtime for OpenSSL ASYNC jobs; one connection pool each, one
//! token cache) rebuilt after a fork or a settings change, the log, the hop to a thread with
//! enough stack, loading a vault key and the remote operations (written once, run in place
//! or as a task while a job waits), and failures as reason codes with readable messages
//! behind a panic guard.
//!
//! Nothing here links OpenSSL: the provider must not link libcrypto (a module built once
//! serves both `libcrypto.so.3` and `libcrypto.so.4` processes); the ASYNC job functions are
//! found by name in the hosting libcrypto at run time. Nothing here starts a
//! thread or opens a socket before the first operation (servers fork after loading keys),
//! reuses a parent's connections after a fork, or puts a token into a log line or an error.

pub mod async_job;
pub mod failure;
pub mod log;
pub mod remote;
pub mod runtime;
pub mod settings;
pub mod stack;
pub mod uri;
