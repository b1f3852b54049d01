//! The offline test kit: a local Key Vault emulator and helpers shared by the suites.
//!
//! Nothing here may reach a non-loopback address: the emulator binds loopback only, and the
//! helpers build clients whose every endpoint (vault and token) is the emulator or a mock.

pub mod backends;
pub mod emulator;
pub mod frontends;
pub mod lab;
pub mod servers;
pub mod support;
pub mod trace;
