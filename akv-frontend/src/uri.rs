//! Store URIs (what `-key`, `-inkey` and nginx's `store:` name) to the key strings
//! [`akv_proto::KeyId::parse`] reads. Accepted, besides the engine's own strings:
//! an `akv:` prefix before any of them (`akv:vault:NAME:KEY`, `akv:https://...`), and the
//! spellings of Microsoft's Managed HSM provider, so its users switch by changing the module
//! name only: `managedhsm:NAME:KEY[?version=V]` and
//! `akv:type=managedhsm,vault=NAME,name=KEY[,version=V]` (also `type=vault`/`keyvault`).

use crate::failure::{Failure, Reason};

/// The key string a store URI names.
pub fn key_string_of(uri: &str) -> Result<String, Failure> {
    let bad = |why: &str| {
        Failure::new(
            Reason::InvalidKeyId,
            format!("{}: {why}", akv_proto::shown(uri)),
        )
    };
    let body = strip_ci(uri, "akv:").unwrap_or(uri);
    if body.contains('=') && !body.contains("://") && !body.contains('?') {
        // akv:type=managedhsm,vault=NAME,name=KEY[,version=V]
        let (mut kind, mut vault, mut name, mut version) = (None, None, None, None);
        for pair in body.split(',') {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad("expected key=value pairs separated by commas"))?;
            let slot = match k.trim().to_ascii_lowercase().as_str() {
                "type" => &mut kind,
                "vault" => &mut vault,
                "name" => &mut name,
                "version" => &mut version,
                other => return Err(bad(&format!("unknown field {other:?}"))),
            };
            *slot = Some(v.trim().to_string());
        }
        let kind = match kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("managedhsm") => "managedHsm",
            Some("vault" | "keyvault") => "vault",
            Some(other) => {
                return Err(bad(&format!(
                    "unknown type {other:?}: use managedhsm or vault"
                )));
            }
            None => return Err(bad("type= is missing")),
        };
        let vault = vault.ok_or_else(|| bad("vault= is missing"))?;
        let name = name.ok_or_else(|| bad("name= is missing"))?;
        return Ok(match version {
            Some(v) => format!("{kind}:{vault}:{name}:{v}"),
            None => format!("{kind}:{vault}:{name}"),
        });
    }
    // managedhsm:NAME:KEY?version=V
    if let Some((path, query)) = body.split_once('?') {
        let version = query
            .strip_prefix("version=")
            .filter(|v| !v.is_empty() && !v.contains(['&', '=']))
            .ok_or_else(|| bad("the only query accepted is ?version=VERSION"))?;
        return Ok(format!("{path}:{version}"));
    }
    Ok(body.to_string())
}

fn strip_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_names_the_same_key() {
        let cases = [
            ("vault:v1:k", "vault:v1:k"),
            ("akv:vault:v1:k", "vault:v1:k"),
            ("AKV:managedHsm:h1:k:0123", "managedHsm:h1:k:0123"),
            ("managedhsm:h1:k", "managedhsm:h1:k"),
            ("managedhsm:h1:k?version=0123", "managedhsm:h1:k:0123"),
            ("akv:type=managedhsm,vault=h1,name=k", "managedHsm:h1:k"),
            (
                "akv:type=ManagedHSM,vault=h1,name=k,version=0123",
                "managedHsm:h1:k:0123",
            ),
            ("akv:type=vault,vault=v1,name=k", "vault:v1:k"),
            (
                "akv:https://v1.vault.azure.net/keys/k/0123",
                "https://v1.vault.azure.net/keys/k/0123",
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(key_string_of(uri).unwrap(), want, "{uri}");
        }
    }

    #[test]
    fn malformed_uris_say_what_is_wrong() {
        let cases = [
            ("akv:type=managedhsm,name=k", "vault= is missing"),
            ("akv:type=hsm,vault=h,name=k", "unknown type"),
            ("akv:type=vault,vault=v,name=k,colour=red", "unknown field"),
            ("managedhsm:h:k?v=1", "?version=VERSION"),
            ("managedhsm:h:k?version=", "?version=VERSION"),
        ];
        for (uri, want) in cases {
            let e = key_string_of(uri).unwrap_err();
            assert!(e.message.contains(want), "{uri}: {}", e.message);
            assert_eq!(e.reason, Reason::InvalidKeyId);
        }
    }
}
