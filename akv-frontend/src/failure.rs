//! Why a front-end call failed, in words OpenSSL prints, and the guard every `extern "C"`
//! callback runs behind: no panic ever crosses into C, and every failure reaches the front
//! end's error queue (the engine's `ERR_*` calls, the provider's core upcalls) as a reason
//! code and a readable message.

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Why a call failed. The numbers are the reason codes on OpenSSL's error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Reason {
    /// The key string is not a valid key identifier.
    InvalidKeyId = 100,
    /// The key could not be fetched from the vault.
    KeyFetch = 101,
    /// The vault key cannot be used (type, curve, disabled, expired).
    UnusableKey = 102,
    /// Remote signing failed.
    Sign = 103,
    /// Remote decryption failed.
    Decrypt = 104,
    /// The requested padding/digest cannot be done by Key Vault.
    NotPossibleRemotely = 105,
    /// A setting is invalid.
    Setting = 106,
    /// The configuration (TLS, credential) cannot be built.
    Configuration = 107,
    /// A bug: a panic was caught.
    Internal = 108,
    /// The output buffer OpenSSL gave is too small.
    BufferTooSmall = 109,
    /// The vault has no usable certificate of the name asked for.
    Certificate = 110,
}

impl Reason {
    /// The reason's text, registered with OpenSSL.
    pub const fn text(self) -> &'static CStr {
        match self {
            Reason::InvalidKeyId => c"invalid Key Vault key identifier",
            Reason::KeyFetch => c"cannot fetch the key from Key Vault",
            Reason::UnusableKey => c"the Key Vault key cannot be used",
            Reason::Sign => c"Key Vault signing failed",
            Reason::Decrypt => c"Key Vault decryption failed",
            Reason::NotPossibleRemotely => c"operation not possible with a Key Vault key",
            Reason::Setting => c"invalid e_akv setting",
            Reason::Configuration => c"e_akv configuration failed",
            Reason::Internal => c"internal error in e_akv",
            Reason::BufferTooSmall => c"output buffer too small",
            Reason::Certificate => c"no usable certificate in Key Vault",
        }
    }

    /// Every reason, for the string tables.
    pub const ALL: [Reason; 11] = [
        Reason::InvalidKeyId,
        Reason::KeyFetch,
        Reason::UnusableKey,
        Reason::Sign,
        Reason::Decrypt,
        Reason::NotPossibleRemotely,
        Reason::Setting,
        Reason::Configuration,
        Reason::Internal,
        Reason::BufferTooSmall,
        Reason::Certificate,
    ];
}

/// A failure: a reason code and the details (never a secret).
#[derive(Debug, Clone)]
pub struct Failure {
    /// The reason code.
    pub reason: Reason,
    /// What went wrong, for the error queue and the log.
    pub message: String,
    /// Already said in the log by other means (an operation failed at once because its
    /// vault's circuit is open, which was logged when it opened): logged at debug level only,
    /// so that an outage gives one log line, not one per handshake.
    pub already_logged: bool,
}

impl Failure {
    /// Builds a failure.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
            already_logged: false,
        }
    }

    /// The failure of an operation on a key: as [`Failure::new`], marked as already logged
    /// when the operation failed at once because the vault's circuit is open.
    pub fn of_operation(reason: Reason, message: String, error: &akv_proto::Error) -> Self {
        Failure {
            already_logged: matches!(error, akv_proto::Error::Unreachable { .. }),
            ..Failure::new(reason, message)
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.reason.text().to_string_lossy(),
            self.message
        )
    }
}

/// A front end's way to put a failure on the calling thread's OpenSSL error queue.
pub type Raise = fn(&Failure, &'static CStr);

/// A failure raised on a thread whose error queue nobody reads, kept to be raised on the
/// thread that waits for it.
pub struct Deferred {
    failure: Failure,
    function: &'static CStr,
    raise: Raise,
}

impl Deferred {
    /// Puts the failure on the calling thread's error queue.
    pub fn raise(self) {
        (self.raise)(&self.failure, self.function);
    }
}

thread_local! {
    /// Set while `collect_raised` runs: failures are kept here instead of being raised.
    static DEFERRED: std::cell::RefCell<Option<Vec<Deferred>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `body` (a callback's work moved to another thread), keeping what it raises instead
/// of putting it on this thread's error queue: the caller raises it on the callback's own
/// thread, where the application reads its errors.
pub fn collect_raised<T>(body: impl FnOnce() -> T) -> (T, Vec<Deferred>) {
    DEFERRED.with(|d| *d.borrow_mut() = Some(Vec::new()));
    let value = body();
    let raised = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
    (value, raised)
}

fn raise_or_defer(raise: Raise, failure: &Failure, function: &'static CStr) {
    let kept = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(list) => {
            list.push(Deferred {
                failure: failure.clone(),
                function,
                raise,
            });
            true
        }
        None => false,
    });
    if !kept {
        raise(failure, function);
    }
}

/// Runs a callback body: a returned failure or a caught panic is handed to `raise` (which
/// puts it on the front end's error queue) and `on_error` is returned instead.
pub fn guard<T>(
    function: &'static CStr,
    on_error: T,
    raise: Raise,
    body: impl FnOnce() -> Result<T, Failure>,
) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(failure)) => {
            if failure.already_logged {
                crate::log::debug(format_args!("{failure}"));
            } else {
                crate::log::error(format_args!("{failure}"));
            }
            raise_or_defer(raise, &failure, function);
            on_error
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let failure = Failure::new(
                Reason::Internal,
                format!("caught a panic in {}: {what}", function.to_string_lossy()),
            );
            crate::log::error(format_args!("{failure}"));
            raise_or_defer(raise, &failure, function);
            on_error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static RAISED: Mutex<Vec<(Reason, String)>> = Mutex::new(Vec::new());

    fn record(f: &Failure, _: &'static CStr) {
        RAISED.lock().unwrap().push((f.reason, f.message.clone()));
    }

    static LATER: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn record_later(f: &Failure, _: &'static CStr) {
        LATER.lock().unwrap().push(f.message.clone());
    }

    #[test]
    fn failures_of_moved_work_are_raised_where_they_are_collected() {
        let (value, raised) = collect_raised(|| {
            guard(c"moved", -1, record_later, || {
                Err::<i32, _>(Failure::new(Reason::Sign, "vault said no"))
            })
        });
        assert_eq!(value, -1);
        assert!(LATER.lock().unwrap().is_empty(), "not raised on the worker");
        assert_eq!(raised.len(), 1);
        for r in raised {
            r.raise();
        }
        assert_eq!(*LATER.lock().unwrap(), ["vault said no"]);
        // Outside a collection, raised at once as before.
        guard(c"here", -1, record_later, || {
            Err::<i32, _>(Failure::new(Reason::Sign, "again"))
        });
        assert_eq!(LATER.lock().unwrap().len(), 2);
    }

    #[test]
    fn failures_and_panics_are_raised_not_propagated() {
        assert_eq!(guard(c"ok", -1, record, || Ok(7)), 7);
        let got = guard(c"fails", -1, record, || {
            Err::<i32, _>(Failure::new(Reason::Sign, "vault said no"))
        });
        assert_eq!(got, -1);
        let got = guard(c"panics", -2, record, || -> Result<i32, Failure> {
            panic!("boom")
        });
        assert_eq!(got, -2);
        let raised = RAISED.lock().unwrap();
        assert_eq!(raised[0], (Reason::Sign, "vault said no".to_string()));
        assert_eq!(raised[1].0, Reason::Internal);
        assert!(raised[1].1.contains("panics: boom"), "{}", raised[1].1);
    }
}
