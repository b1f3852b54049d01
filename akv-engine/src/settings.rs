//! Engine settings: each is an engine control command (listed by `openssl engine -vvvv
//! e_akv`, settable from openssl.cnf and `-pre NAME:VALUE`) and an environment variable.
//! A control command wins over the variable.

use std::ffi::{CStr, c_uint};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::errors::{EngineError, Reason};
use crate::ffi::{
    ENGINE_CMD_BASE, ENGINE_CMD_DEFN, ENGINE_CMD_FLAG_INTERNAL, ENGINE_CMD_FLAG_STRING,
};

/// One setting.
pub struct Setting {
    /// Control command name.
    pub name: &'static CStr,
    /// Environment variable.
    pub env: &'static str,
    /// Description shown by `openssl engine -vvvv`.
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
pub const SETTINGS: [Setting; 14] = [
    Setting { name: c"CLOUD", env: "AKV_CLOUD", description: c"Azure cloud: public (default), china or usgov", validate: cloud },
    Setting { name: c"ALLOWED_HOSTS", env: "AKV_ALLOWED_HOSTS", description: c"Extra hosts keys may live on besides Azure's (host, host:port or .suffix, comma-separated)", validate: hosts },
    Setting { name: c"ENDPOINT", env: "AKV_ENDPOINT", description: c"Send vault:/managedHsm: keys to this https://host[:port] (private gateway or local emulator)", validate: any },
    Setting { name: c"API_VERSION", env: "AKV_API_VERSION", description: c"Key Vault REST api-version (default 2025-07-01)", validate: api_version },
    Setting { name: c"REQUEST_TIMEOUT_MS", env: "AKV_REQUEST_TIMEOUT_MS", description: c"Timeout of one HTTP exchange in milliseconds (default 5000)", validate: millis },
    Setting { name: c"BUDGET_MS", env: "AKV_BUDGET_MS", description: c"Total time for one operation with retries, in milliseconds (default 10000)", validate: millis },
    Setting { name: c"CREDENTIAL", env: "AKV_CREDENTIAL", description: c"Token source: auto (default), managed-identity, workload-identity, client-secret, cli or static", validate: credential },
    Setting { name: c"MI_CLIENT_ID", env: "AKV_MI_CLIENT_ID", description: c"User-assigned managed identity by client id", validate: any },
    Setting { name: c"MI_OBJECT_ID", env: "AKV_MI_OBJECT_ID", description: c"User-assigned managed identity by object id", validate: any },
    Setting { name: c"MI_RESOURCE_ID", env: "AKV_MI_RESOURCE_ID", description: c"User-assigned managed identity by Azure resource id", validate: any },
    Setting { name: c"IMDS_ENDPOINT", env: "AKV_IMDS_ENDPOINT", description: c"Instance metadata service origin (default http://169.254.169.254)", validate: any },
    Setting { name: c"CA_FILE", env: "AKV_CA_FILE", description: c"PEM file of extra CA certificates to trust for the vault", validate: any },
    Setting { name: c"LOG_LEVEL", env: "AKV_LOG_LEVEL", description: c"Log level: off (default), error, info or debug", validate: log_level },
    Setting { name: c"LOG_FILE", env: "AKV_LOG_FILE", description: c"Append the log to this file instead of stderr", validate: any },
];

/// The command table OpenSSL reads (ends with a zero entry).
pub struct CommandTable(pub [ENGINE_CMD_DEFN; TABLE_LEN]);
// SAFETY: only pointers to 'static C strings.
unsafe impl Sync for CommandTable {}

/// The table given to `ENGINE_set_cmd_defns`.
pub static COMMANDS: CommandTable = CommandTable(build_table());

const fn build_table() -> [ENGINE_CMD_DEFN; TABLE_LEN] {
    let mut table = [const {
        ENGINE_CMD_DEFN {
            cmd_num: 0,
            cmd_name: std::ptr::null(),
            cmd_desc: std::ptr::null(),
            cmd_flags: 0,
        }
    }; TABLE_LEN];
    let mut i = 0;
    while i < SETTINGS.len() {
        table[i] = ENGINE_CMD_DEFN {
            cmd_num: ENGINE_CMD_BASE + i as c_uint,
            cmd_name: SETTINGS[i].name.as_ptr(),
            cmd_desc: SETTINGS[i].description.as_ptr(),
            cmd_flags: ENGINE_CMD_FLAG_STRING,
        };
        i += 1;
    }
    let mut j = 0;
    while j < INTERNAL.len() {
        table[SETTINGS.len() + j] = ENGINE_CMD_DEFN {
            cmd_num: INTERNAL_BASE + j as c_uint,
            cmd_name: INTERNAL[j].as_ptr(),
            cmd_desc: c"accepted and ignored: e_akv never prompts".as_ptr(),
            cmd_flags: ENGINE_CMD_FLAG_INTERNAL,
        };
        j += 1;
    }
    table
}

/// Commands that applications written for PKCS#11 engines send unconditionally (stunnel,
/// libp11 users) to pass a UI method for PIN prompts. We have nothing to prompt for, so they
/// are accepted and ignored instead of failing.
pub const INTERNAL: [&CStr; 2] = [c"SET_USER_INTERFACE", c"SET_CALLBACK_DATA"];
/// Number of the first internal command.
pub const INTERNAL_BASE: c_uint = ENGINE_CMD_BASE + 100;
const TABLE_LEN: usize = SETTINGS.len() + INTERNAL.len() + 1;

/// Whether `cmd` is one of the ignored internal commands (whose argument is not a string).
pub fn is_internal(cmd: i32) -> bool {
    (INTERNAL_BASE as i64..INTERNAL_BASE as i64 + INTERNAL.len() as i64).contains(&(cmd as i64))
}

/// Values set by control commands.
static VALUES: Mutex<[Option<String>; SETTINGS.len()]> =
    Mutex::new([const { None }; SETTINGS.len()]);
/// Bumped on every change, so that the runtime knows to rebuild.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Applies a control command.
pub fn set(cmd: i32, value: Option<&str>) -> Result<(), EngineError> {
    let index = (cmd as i64 - ENGINE_CMD_BASE as i64) as usize;
    let setting = SETTINGS.get(index).ok_or_else(|| {
        EngineError::new(Reason::Setting, format!("unknown control command {cmd}"))
    })?;
    let name = setting.name.to_string_lossy();
    let value =
        value.ok_or_else(|| EngineError::new(Reason::Setting, format!("{name} needs a value")))?;
    (setting.validate)(value)
        .map_err(|e| EngineError::new(Reason::Setting, format!("{name}: {e}")))?;
    VALUES.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(value.to_owned());
    GENERATION.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// The current generation of settings.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

/// The effective value of a setting: control command, else environment variable.
pub fn get(name: &str) -> Option<String> {
    let index = SETTINGS
        .iter()
        .position(|s| s.name.to_bytes() == name.as_bytes())?;
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
    fn table_is_terminated_and_numbered() {
        let t = &COMMANDS.0;
        assert_eq!(t.len(), SETTINGS.len() + INTERNAL.len() + 1);
        assert_eq!(t[0].cmd_num, 200);
        assert!(t[t.len() - 1].cmd_name.is_null());
        assert!(is_internal(t[SETTINGS.len()].cmd_num as i32));
        assert!(!is_internal(200));
        for (i, s) in SETTINGS.iter().enumerate() {
            assert!(s.env.starts_with("AKV_"));
            assert_eq!(
                format!("AKV_{}", s.name.to_string_lossy()),
                s.env,
                "env names mirror command names"
            );
            assert_eq!(t[i].cmd_num, 200 + i as u32);
        }
    }

    #[test]
    fn invalid_values_are_refused_with_the_setting_name() {
        let e = set(200 + 4, Some("soon")).unwrap_err();
        assert!(
            e.message.contains("REQUEST_TIMEOUT_MS") && e.message.contains("milliseconds"),
            "{}",
            e.message
        );
        assert!(
            set(200, Some("mars"))
                .unwrap_err()
                .message
                .contains("unknown cloud")
        );
        assert!(set(999, Some("x")).is_err());
        assert!(set(200 + 1, Some("a@b")).is_err());
    }
}
