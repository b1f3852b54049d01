//! The process's state: one key client (connection pool and token cache) shared by
//! every thread. Built on first use, never at load time (no threads or sockets before a
//! fork). After a fork the child notices the new pid and builds its own; the parent's state
//! is deliberately leaked in the child, because dropping it would close (and send TLS
//! close_notify on) sockets the parent still uses.
//!
//! Operations of OpenSSL ASYNC jobs run on the async backend instead: one tokio runtime
//! with one worker thread per process, built on the first such operation (never at load
//! time, so never before a fork), sharing the blocking client's token cache and circuit
//! breakers.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use akv_http_ureq::{KeyClient, ProxySetting, TokenProvider, Transport, TransportConfig};
use akv_proto::credential::{ARC_HIMDS_FILE, CredentialInputs, SourceChoice, UserAssignedId};
use akv_proto::{ApiVersion, BreakerPolicy, Cloud, EndpointPolicy, OperationConfig, Transition};

use crate::failure::{Failure, Reason};
use crate::{log, settings};

/// Everything an operation needs.
pub struct Runtime {
    pid: u32,
    generation: u64,
    /// The settings it was built from, reused by forked children: servers such as nginx
    /// clear the environment of their workers, which must still behave like the master.
    resolved: Resolved,
    /// Where keys may live.
    pub policy: EndpointPolicy,
    /// The client.
    pub client: KeyClient,
    /// The async client and its runtime, once an ASYNC job needed them.
    async_side: Mutex<Option<Arc<AsyncSide>>>,
}

/// The async client and the runtime whose tasks run it.
pub struct AsyncSide {
    /// Where the tasks run; shut down without waiting when dropped (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    /// The client, used inside the runtime's tasks.
    pub client: akv_http_hyper::KeyClient,
    /// One per vault request in flight: a server with a thousand handshakes waiting opens
    /// at most this many connections to the vault, and keeps them.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

impl AsyncSide {
    /// Runs `task` on the runtime.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            drop(runtime.spawn(task));
        }
    }
}

impl Drop for AsyncSide {
    fn drop(&mut self) {
        // Without waiting: the last holder may be a task of this very runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Runtime {
    /// The async side, built on first use.
    fn async_side(&self) -> Result<Arc<AsyncSide>, Failure> {
        let mut slot = self.async_side.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(side) = slot.as_ref() {
            return Ok(side.clone());
        }
        let built = Arc::new(build_async_side(&self.resolved, &self.client)?);
        *slot = Some(built.clone());
        Ok(built)
    }
}

/// The async side of the current runtime, building what is missing. Cheap once built: it
/// is asked on an ASYNC job's small stack, where only the first call hops to a helper
/// thread to build.
pub fn async_side() -> Result<Arc<AsyncSide>, Failure> {
    if let Some(side) = built_async_side() {
        return Ok(side);
    }
    crate::stack::with_enough_stack(|| runtime()?.async_side())
}

fn built_async_side() -> Option<Arc<AsyncSide>> {
    let slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    let current = slot.as_ref()?;
    if current.pid != process_id() || current.generation != settings::generation() {
        return None;
    }
    current
        .async_side
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Settings read from control commands and the environment, ready to build a runtime.
#[derive(Clone)]
struct Resolved {
    policy: EndpointPolicy,
    config: OperationConfig,
    transport: TransportConfig,
    source: akv_proto::credential::CredentialSource,
    /// Most requests in flight on the async side.
    async_connections: usize,
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// This process's id, kept so that an operation costs no `getpid` system call; 0 when not
/// known. A fork handler clears it in every child, which then reads its own.
static PID: AtomicU32 = AtomicU32::new(0);
static FORK_HANDLER: Once = Once::new();
static FORK_HANDLER_SET: AtomicBool = AtomicBool::new(false);

extern "C" fn forget_pid_in_child() {
    PID.store(0, Ordering::Relaxed);
}

/// The id of the calling process, noticing forks.
fn process_id() -> u32 {
    FORK_HANDLER.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic, which is async-signal
        // safe as fork handlers must be. The library is never unloaded (the engine and the
        // provider are both linked nodelete), so the handler outlives every fork.
        let set = unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) } == 0;
        FORK_HANDLER_SET.store(set, Ordering::Relaxed);
    });
    if !FORK_HANDLER_SET.load(Ordering::Relaxed) {
        return std::process::id();
    }
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// The current runtime, building it when missing, stale after a settings change, or
/// inherited from a parent process.
pub fn runtime() -> Result<Arc<Runtime>, Failure> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    let pid = process_id();
    let generation = settings::generation();
    let mut inherited = None;
    if let Some(current) = slot.as_ref() {
        if current.pid == pid && current.generation == generation {
            return Ok(current.clone());
        }
        if current.pid != pid {
            // Forked: keep the parent's settings, never touch its sockets.
            if current.generation == generation {
                inherited = Some(current.resolved.clone());
            }
            std::mem::forget(slot.take());
        }
    }
    let resolved = match inherited {
        Some(r) => {
            log::info(format_args!(
                "new process after fork: building fresh connections and token cache"
            ));
            r
        }
        None => resolve()?,
    };
    let built = Arc::new(construct(pid, generation, resolved)?);
    *slot = Some(built.clone());
    Ok(built)
}

/// Drops the runtime (the engine finished or the provider was unloaded, in the same process).
pub fn reset() {
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    match slot.take() {
        Some(r) if r.pid != process_id() => std::mem::forget(r),
        other => drop(other),
    }
}

fn setting_err(name: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(Reason::Setting, format!("{name}: {e}"))
}

fn millis(name: &str, default: u64) -> Result<Duration, Failure> {
    match settings::get(name) {
        None => Ok(Duration::from_millis(default)),
        Some(v) => v
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| setting_err(name, e)),
    }
}

fn resolve() -> Result<Resolved, Failure> {
    let log_level = settings::get("LOG_LEVEL")
        .map(|v| log::Level::parse(&v).ok_or_else(|| setting_err("LOG_LEVEL", v)))
        .transpose()?
        .unwrap_or(log::Level::Off);
    let log_file = settings::get("LOG_FILE");
    log::configure(log_level, log_file.as_deref()).map_err(|e| setting_err("LOG_FILE", e))?;

    let cloud = match settings::get("CLOUD") {
        Some(name) => Cloud::from_name(&name)
            .ok_or_else(|| setting_err("CLOUD", format!("unknown cloud {name:?}")))?,
        None => Cloud::Public,
    };
    let mut policy = EndpointPolicy::new(cloud);
    if let Some(hosts) = settings::get("ALLOWED_HOSTS") {
        policy = policy
            .allow_hosts(&hosts)
            .map_err(|e| setting_err("ALLOWED_HOSTS", e))?;
    }
    if let Some(endpoint) = settings::get("ENDPOINT") {
        // Naming an endpoint explicitly is the operator's consent to send tokens there.
        let authority = endpoint
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        policy = policy
            .allow_host(authority)
            .and_then(|p| p.with_endpoint_override(&endpoint))
            .map_err(|e| setting_err("ENDPOINT", e))?;
    }
    let api_version = match settings::get("API_VERSION") {
        Some(v) => ApiVersion::parse(&v).map_err(|e| setting_err("API_VERSION", e))?,
        None => ApiVersion::default(),
    };
    let budget = millis("BUDGET_MS", 10_000)?;
    let request_timeout = millis("REQUEST_TIMEOUT_MS", 5_000)?;
    let failures = match settings::get("BREAKER_FAILURES") {
        None => BreakerPolicy::default().failures_to_open,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map_err(|e| setting_err("BREAKER_FAILURES", e))?,
    };
    let breaker = (failures > 0).then(|| -> Result<BreakerPolicy, Failure> {
        let defaults = BreakerPolicy::default();
        let first_cooldown = millis("BREAKER_COOLDOWN_MS", 2_000)?;
        Ok(BreakerPolicy {
            failures_to_open: failures,
            first_cooldown,
            max_cooldown: millis("BREAKER_MAX_COOLDOWN_MS", 10_000)?.max(first_cooldown),
            // A probe needs no more than a healthy vault's answer time.
            probe_timeout: defaults.probe_timeout.min(request_timeout),
            ..defaults
        })
    });
    let config = OperationConfig {
        api_version,
        budget,
        request_timeout,
        breaker: breaker.transpose()?,
        ..OperationConfig::default()
    };

    // Read now, in the process that loads the keys: forked workers may run as a user who
    // cannot read the file.
    let ca_file = settings::get("CA_FILE");
    let extra_ca_pem = ca_file
        .as_deref()
        .map(|path| {
            std::fs::read(path)
                .map_err(|e| setting_err("CA_FILE", format!("cannot read {path}: {e}")))
        })
        .transpose()?;
    let transport = TransportConfig {
        connect_timeout: millis("CONNECT_TIMEOUT_MS", 1_000)?,
        extra_ca_file: ca_file.map(Into::into),
        extra_ca_pem,
        proxy: ProxySetting::FromEnv,
        ..TransportConfig::default()
    };

    let choice = match settings::get("CREDENTIAL") {
        Some(v) => SourceChoice::parse(&v)
            .ok_or_else(|| setting_err("CREDENTIAL", format!("unknown source {v:?}")))?,
        None => SourceChoice::Auto,
    };
    let identity = settings::get("MI_CLIENT_ID")
        .map(UserAssignedId::ClientId)
        .or_else(|| settings::get("MI_OBJECT_ID").map(UserAssignedId::ObjectId))
        .or_else(|| settings::get("MI_RESOURCE_ID").map(UserAssignedId::ResourceId));
    let imds = settings::get("IMDS_ENDPOINT");
    // The engine's IMDS setting is passed to the credential rules as the SDKs' own override.
    let env = move |name: &str| -> Option<String> {
        let value = std::env::var(name).ok();
        if name == "AZURE_POD_IDENTITY_AUTHORITY_HOST" {
            imds.clone().or(value)
        } else {
            value
        }
    };
    let inputs = CredentialInputs {
        env: &env,
        arc_agent_installed: std::path::Path::new(ARC_HIMDS_FILE).exists(),
        cloud,
        identity,
        cli_timeout: budget,
    };
    let source = inputs
        .source(choice)
        .map_err(|e| Failure::new(Reason::Configuration, e.to_string()))?;
    log::info(format_args!("credential source: {}", source.name()));
    let async_connections = match settings::get("ASYNC_CONNECTIONS") {
        None => 64,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|e| setting_err("ASYNC_CONNECTIONS", e))?
            .max(1),
    };
    Ok(Resolved {
        policy,
        config,
        transport,
        source,
        async_connections,
    })
}

/// One log line per change of a vault's circuit (never one per operation).
fn log_transition(origin: &str, transition: &Transition) {
    match transition {
        Transition::Opened {
            failures,
            cause,
            cooldown,
        } => log::error(format_args!(
            "vault {origin} unreachable after {failures} failures (last: {cause}): operations on it now fail at once; first probe in {cooldown:?}"
        )),
        Transition::Probing { outage } => log::info(format_args!(
            "vault {origin}: probing, unreachable for {outage:.1?}"
        )),
        Transition::Reopened { cause, cooldown } => log::info(format_args!(
            "vault {origin} still unreachable ({cause}); next probe in {cooldown:?}"
        )),
        Transition::Closed {
            outage,
            failed_fast,
        } => log::error(format_args!(
            "vault {origin} answers again after {outage:.1?}; {failed_fast} operations failed at once meanwhile"
        )),
    }
}

fn construct(pid: u32, generation: u64, resolved: Resolved) -> Result<Runtime, Failure> {
    // The log was opened by `resolve`; a forked child keeps that open file (it may not be
    // allowed to open it again after nginx drops privileges).
    let transport = Transport::new(&resolved.transport)
        .map_err(|e| Failure::new(Reason::Configuration, e.to_string()))?;
    let tokens = Arc::new(TokenProvider::new(
        resolved.source.clone(),
        resolved.config.budget,
    ));
    let client = KeyClient::new(transport, tokens, resolved.config.clone());
    client.on_breaker_transition(Arc::new(log_transition));
    Ok(Runtime {
        pid,
        generation,
        policy: resolved.policy.clone(),
        resolved,
        client,
        async_side: Mutex::new(None),
    })
}

fn build_async_side(resolved: &Resolved, blocking: &KeyClient) -> Result<AsyncSide, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("e_akv-async")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| {
            Failure::new(
                Reason::Configuration,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    // Idle connections are kept for every request that may be in flight.
    let transport_config = TransportConfig {
        max_idle_per_host: resolved.async_connections,
        ..resolved.transport.clone()
    };
    // The transport's connector needs the runtime to be entered.
    let client = {
        let _entered = runtime.enter();
        let transport = akv_http_hyper::Transport::new(&transport_config)
            .map_err(|e| Failure::new(Reason::Configuration, e.to_string()))?;
        akv_http_hyper::KeyClient::sharing(
            transport,
            blocking.token_supply(),
            blocking.breakers(),
            resolved.config.clone(),
        )
    };
    log::info(format_args!(
        "async runtime started for ASYNC jobs (one worker thread, at most {} requests in flight)",
        resolved.async_connections
    ));
    Ok(AsyncSide {
        runtime: Some(runtime),
        client,
        in_flight: Arc::new(tokio::sync::Semaphore::new(resolved.async_connections)),
    })
}
