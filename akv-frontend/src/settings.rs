//! The settings, one table for every front end: each has a name (the engine's control
//! command, listed by `openssl engine -vvvv e_akv` and settable with `-pre NAME:VALUE`; the
//! provider's openssl.cnf key) and an environment variable. A value set explicitly (control
//! command, openssl.cnf) wins over the variable.

use std::ffi::CStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::failure::{Failure, Reason};

/// One setting.
pub struct Setting {
    /// Name (control command, openssl.cnf key).
    pub name: &'static CStr,
    /// Environment variable.
    pub env: &'static str,
    /// What it does (shown by `openssl engine -vvvv`).
    pub description: &'static CStr,
    /// Checks a value before it is accepted.
    pub validate: fn(&str) -> Result<(), String>,
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn millis(v: &str) -> Result<(), String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (1..=600_000).contains(&n) => Ok(()),
        _ => Err(format!(
            "{v:?} is not a number of milliseconds from 1 to 600000"
        )),
    }
}

fn cloud(v: &str) -> Result<(), String> {
    akv_proto::Cloud::from_name(v)
        .map(|_| ())
        .ok_or_else(|| format!("unknown cloud {v:?}: use public, china or usgov"))
}

fn api_version(v: &str) -> Result<(), String> {
    akv_proto::ApiVersion::parse(v.trim()).map(|_| ())
}

fn credential(v: &str) -> Result<(), String> {
    akv_proto::credential::SourceChoice::parse(v)
        .map(|_| ())
        .ok_or_else(|| format!("unknown credential source {v:?}: use auto, managed-identity, workload-identity, client-secret, cli or static"))
}

fn count(v: &str) -> Result<(), String> {
    v.trim()
        .parse::<u32>()
        .map(|_| ())
        .map_err(|_| format!("{v:?} is not a whole number"))
}

fn positive(v: &str) -> Result<(), String> {
    match v.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(()),
        _ => Err(format!("{v:?} is not a whole number of at least 1")),
    }
}

fn log_level(v: &str) -> Result<(), String> {
    crate::log::Level::parse(v)
        .map(|_| ())
        .ok_or_else(|| format!("unknown log level {v:?}: use off, error, info or debug"))
}

fn hosts(v: &str) -> Result<(), String> {
    akv_proto::EndpointPolicy::default()
        .allow_hosts(v)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Every setting, in control-command order.
pub const SETTINGS: [Setting; 19] = [
    Setting { name: c"CLOUD", env: "AKV_CLOUD", description: c"Azure cloud: public (default), china or usgov", validate: cloud },
    Setting { name: c"ALLOWED_HOSTS", env: "AKV_ALLOWED_HOSTS", description: c"Extra hosts keys may live on besides Azure's (host, host:port or .suffix, comma-separated)", validate: hosts },
    Setting { name: c"ENDPOINT", env: "AKV_ENDPOINT", description: c"Send vault:/managedHsm: keys to this https://host[:port] (private gateway or local emulator)", validate: any },
    Setting { name: c"API_VERSION", env: "AKV_API_VERSION", description: c"Key Vault REST api-version (default 2025-07-01)", validate: api_version },
    Setting { name: c"REQUEST_TIMEOUT_MS", env: "AKV_REQUEST_TIMEOUT_MS", description: c"Timeout of one HTTP exchange in milliseconds (default 5000)", validate: millis },
    Setting { name: c"BUDGET_MS", env: "AKV_BUDGET_MS", description: c"Total time for one operation with retries, in milliseconds (default 10000)", validate: millis },
    Setting { name: c"CONNECT_TIMEOUT_MS", env: "AKV_CONNECT_TIMEOUT_MS", description: c"Timeout of a TCP connect to the vault in milliseconds (default 1000)", validate: millis },
    Setting { name: c"BREAKER_FAILURES", env: "AKV_BREAKER_FAILURES", description: c"Connect failures or timeouts within 30 s that make operations on that vault fail at once (default 2; 0: never)", validate: count },
    Setting { name: c"BREAKER_COOLDOWN_MS", env: "AKV_BREAKER_COOLDOWN_MS", description: c"Wait before the first probe of an unreachable vault, doubling while it stays down (default 2000)", validate: millis },
    Setting { name: c"BREAKER_MAX_COOLDOWN_MS", env: "AKV_BREAKER_MAX_COOLDOWN_MS", description: c"Longest wait between probes of an unreachable vault, which bounds the time to notice its return (default 10000)", validate: millis },
    Setting { name: c"ASYNC_CONNECTIONS", env: "AKV_ASYNC_CONNECTIONS", description: c"Most vault requests in flight (and connections) for the operations of ASYNC jobs; more wait their turn (default 64)", validate: positive },
    Setting { name: c"CREDENTIAL", env: "AKV_CREDENTIAL", description: c"Token source: auto (default), managed-identity, workload-identity, client-secret, cli or static", validate: credential },
    Setting { name: c"MI_CLIENT_ID", env: "AKV_MI_CLIENT_ID", description: c"User-assigned managed identity by client id", validate: any },
    Setting { name: c"MI_OBJECT_ID", env: "AKV_MI_OBJECT_ID", description: c"User-assigned managed identity by object id", validate: any },
    Setting { name: c"MI_RESOURCE_ID", env: "AKV_MI_RESOURCE_ID", description: c"User-assigned managed identity by Azure resource id", validate: any },
    Setting { name: c"IMDS_ENDPOINT", env: "AKV_IMDS_ENDPOINT", description: c"Instance metadata service origin (default http://169.254.169.254)", validate: any },
    Setting { name: c"CA_FILE", env: "AKV_CA_FILE", description: c"PEM file of extra CA certificates to trust for the vault", validate: any },
    Setting { name: c"LOG_LEVEL", env: "AKV_LOG_LEVEL", description: c"Log level: off (default), error, info or debug", validate: log_level },
    Setting { name: c"LOG_FILE", env: "AKV_LOG_FILE", description: c"Append the log to this file instead of stderr", validate: any },
];

/// Values set explicitly.
static VALUES: Mutex<[Option<String>; SETTINGS.len()]> =
    Mutex::new([const { None }; SETTINGS.len()]);
/// Bumped on every change, so that the runtime knows to rebuild.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Sets the setting at `index` in [`SETTINGS`] after checking the value.
pub fn set(index: usize, value: Option<&str>) -> Result<(), Failure> {
    let setting = SETTINGS
        .get(index)
        .ok_or_else(|| Failure::new(Reason::Setting, format!("unknown setting number {index}")))?;
    let name = setting.name.to_string_lossy();
    let value =
        value.ok_or_else(|| Failure::new(Reason::Setting, format!("{name} needs a value")))?;
    (setting.validate)(value).map_err(|e| Failure::new(Reason::Setting, format!("{name}: {e}")))?;
    VALUES.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(value.to_owned());
    GENERATION.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// The index in [`SETTINGS`] of the setting called `name` (as spelled in the table).
pub fn index_of(name: &str) -> Option<usize> {
    SETTINGS
        .iter()
        .position(|s| s.name.to_bytes() == name.as_bytes())
}

/// The current generation of settings.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

/// The effective value of a setting: control command, else environment variable.
pub fn get(name: &str) -> Option<String> {
    let index = index_of(name)?;
    let explicit = VALUES.lock().unwrap_or_else(|p| p.into_inner())[index].clone();
    explicit
        .or_else(|| std::env::var(SETTINGS[index].env).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_mirror_setting_names() {
        for s in &SETTINGS {
            assert_eq!(format!("AKV_{}", s.name.to_string_lossy()), s.env);
        }
    }

    #[test]
    fn invalid_values_are_refused_with_the_setting_name() {
        let timeout = index_of("REQUEST_TIMEOUT_MS").unwrap();
        let e = set(timeout, Some("soon")).unwrap_err();
        assert!(
            e.message.contains("REQUEST_TIMEOUT_MS") && e.message.contains("milliseconds"),
            "{}",
            e.message
        );
        let cloud = index_of("CLOUD").unwrap();
        assert!(
            set(cloud, Some("mars"))
                .unwrap_err()
                .message
                .contains("unknown cloud")
        );
        assert!(set(SETTINGS.len(), Some("x")).is_err());
        assert!(set(index_of("ALLOWED_HOSTS").unwrap(), Some("a@b")).is_err());
        assert!(
            set(cloud, None)
                .unwrap_err()
                .message
                .contains("needs a value")
        );
    }
}
