//! Validated names: vault/HSM names, key names, key versions. A value of these types has
//! passed the rules of PROTOCOL.md section 1 and is therefore safe to put into a URL.

use std::fmt;

use crate::key_id_error::{KeyIdError, KeyIdPart};
use crate::text::shown;

/// A Key Vault or Managed HSM name: 3-24 characters of `0-9a-zA-Z-`, starting with a letter,
/// ending with a letter or digit, without `--`. Stored lowercase (names are case-insensitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VaultName(String);

/// A key name: 1-127 characters of `0-9a-zA-Z-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyName(String);

/// A key version: exactly 32 hexadecimal characters. Stored lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyVersion(String);

pub(crate) const VAULT_NAME_RULE: &str = "3-24 characters of 0-9, a-z, A-Z and '-', starting with a letter, ending with a letter or digit, without '--'";
pub(crate) const KEY_NAME_RULE: &str = "1-127 characters of 0-9, a-z, A-Z and '-'";
pub(crate) const VERSION_RULE: &str = "exactly 32 hexadecimal characters";

impl VaultName {
    /// Validates a vault or Managed HSM name. `part` says which one, for the error message.
    pub fn parse(name: &str, part: KeyIdPart) -> Result<Self, KeyIdError> {
        let bytes = name.as_bytes();
        let ok = (3..=24).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0].is_ascii_alphabetic()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && !name.contains("--");
        if ok {
            Ok(VaultName(name.to_ascii_lowercase()))
        } else {
            Err(KeyIdError::InvalidPart {
                part,
                value: shown(name),
                rule: VAULT_NAME_RULE,
            })
        }
    }

    /// The name, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl KeyName {
    /// Validates a key name.
    pub fn parse(name: &str) -> Result<Self, KeyIdError> {
        let ok = (1..=127).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(KeyName(name.to_owned()))
        } else {
            Err(KeyIdError::InvalidPart {
                part: KeyIdPart::KeyName,
                value: shown(name),
                rule: KEY_NAME_RULE,
            })
        }
    }

    /// The name as given (Key Vault treats names case-insensitively, so we keep the caller's
    /// spelling for log messages).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl KeyVersion {
    /// Validates a key version.
    pub fn parse(version: &str) -> Result<Self, KeyIdError> {
        if version.len() == 32 && version.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(KeyVersion(version.to_ascii_lowercase()))
        } else {
            Err(KeyIdError::InvalidPart {
                part: KeyIdPart::Version,
                value: shown(version),
                rule: VERSION_RULE,
            })
        }
    }

    /// The version, lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_as_str!(VaultName, KeyName, KeyVersion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names() {
        for good in ["abc", "my-vault", "A1b2c3", "a23456789012345678901234"] {
            assert!(
                VaultName::parse(good, KeyIdPart::VaultName).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "ab",
            "1abc",
            "abc-",
            "a--b",
            "a_bc",
            "a.bc",
            "a234567890123456789012345",
            "",
            "évian",
        ] {
            assert!(
                VaultName::parse(bad, KeyIdPart::VaultName).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            VaultName::parse("MyVault", KeyIdPart::VaultName)
                .unwrap()
                .as_str(),
            "myvault"
        );
    }

    #[test]
    fn key_names() {
        assert!(KeyName::parse("k").is_ok());
        assert!(KeyName::parse("-k-").is_ok());
        assert!(KeyName::parse(&"k".repeat(127)).is_ok());
        assert!(KeyName::parse(&"k".repeat(128)).is_err());
        assert!(KeyName::parse("").is_err());
        assert!(KeyName::parse("a/b").is_err());
        assert!(KeyName::parse("a.b").is_err());
    }

    #[test]
    fn versions() {
        assert!(KeyVersion::parse("78deebed173b48e48f55abf87ed4cf71").is_ok());
        assert_eq!(
            KeyVersion::parse("78DEEBED173B48E48F55ABF87ED4CF71")
                .unwrap()
                .as_str(),
            "78deebed173b48e48f55abf87ed4cf71"
        );
        assert!(KeyVersion::parse("78deebed173b48e48f55abf87ed4cf7").is_err());
        assert!(KeyVersion::parse("78deebed173b48e48f55abf87ed4cf7g").is_err());
    }
}
