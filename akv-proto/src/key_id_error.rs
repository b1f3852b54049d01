//! What can be wrong with a key string: the error vocabulary shared by the key identifier
//! parser and the name validators, kept apart so that both can use it without importing
//! each other.

use std::fmt;

/// Which part of a key string was wrong, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyIdPart {
    /// The `vault`/`managedHsm` type word.
    Type,
    /// The Key Vault name.
    VaultName,
    /// The Managed HSM name.
    HsmName,
    /// The key name.
    KeyName,
    /// The key version.
    Version,
    /// The host of a URL.
    Host,
    /// The port of a URL.
    Port,
    /// The path of a URL.
    Path,
}

impl fmt::Display for KeyIdPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyIdPart::Type => "key type",
            KeyIdPart::VaultName => "vault name",
            KeyIdPart::HsmName => "Managed HSM name",
            KeyIdPart::KeyName => "key name",
            KeyIdPart::Version => "key version",
            KeyIdPart::Host => "host",
            KeyIdPart::Port => "port",
            KeyIdPart::Path => "path",
        })
    }
}

/// Why a key string, URL or allowed-host entry was refused. Each variant names the bad part
/// and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyIdError {
    /// Nothing was given.
    #[error(
        "empty key identifier: expected vault:NAME:KEY, managedHsm:NAME:KEY or https://HOST/keys/KEY"
    )]
    Empty,
    /// Longer than [`MAX_KEY_STRING_LEN`].
    #[error("key identifier is {len} characters long; at most {max} are accepted")]
    TooLong {
        /// Length given.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A character that can never appear in a key identifier.
    #[error(
        "key identifier contains {found} at position {position}; only letters, digits, '-', '.', ':', '/', '[' and ']' may appear"
    )]
    BadCharacter {
        /// The character, escaped.
        found: String,
        /// Byte offset.
        position: usize,
    },
    /// The first word was not `vault`, `managedHsm` or a URL scheme.
    #[error(
        "unknown key type {found}: expected 'vault', 'managedHsm' (any case) or an https:// key URL"
    )]
    UnknownType {
        /// What was there, escaped.
        found: String,
    },
    /// Wrong number of `:`-separated parts.
    #[error(
        "key identifier has {parts} ':'-separated parts; expected TYPE:NAME:KEY or TYPE:NAME:KEY:VERSION"
    )]
    WrongShape {
        /// How many parts were found.
        parts: usize,
    },
    /// A part broke its rule.
    #[error("invalid {part} {value}: must be {rule}")]
    InvalidPart {
        /// Which part.
        part: KeyIdPart,
        /// The value, escaped and shortened.
        value: String,
        /// The rule it broke.
        rule: &'static str,
    },
    /// The host is neither an Azure key service host nor allowed by configuration.
    #[error(
        "host {host} is not a Key Vault or Managed HSM host of a known cloud and is not in the allowed hosts; add it to the allowed hosts setting if it is yours"
    )]
    HostNotAllowed {
        /// The host, as parsed.
        host: String,
    },
    /// `http://` to a host that is not loopback.
    #[error(
        "plain http:// is only accepted for loopback hosts (tests), not for {host}; use https://"
    )]
    InsecureScheme {
        /// The host.
        host: String,
    },
}
