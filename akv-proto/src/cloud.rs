//! The Azure clouds we know: which DNS suffixes belong to Key Vault and Managed HSM in each,
//! and which token audience each service expects.

use std::fmt;

/// An Azure cloud. Decides the DNS suffix of `vault:NAME` / `managedHsm:NAME` short forms and
/// the token audience of every host under its suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Cloud {
    /// Azure public cloud (`vault.azure.net`).
    #[default]
    Public,
    /// Azure operated by 21Vianet in China (`vault.azure.cn`).
    China,
    /// Azure US Government (`vault.usgovcloudapi.net`).
    UsGovernment,
}

/// The two key services: Key Vault and Managed HSM. They live under different DNS suffixes
/// and need tokens for different audiences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// Azure Key Vault (`NAME.vault.azure.net`).
    Vault,
    /// Azure Managed HSM (`NAME.managedhsm.azure.net`).
    ManagedHsm,
}

impl Cloud {
    /// Every cloud, in the order hosts are matched against them.
    pub const ALL: [Cloud; 3] = [Cloud::Public, Cloud::China, Cloud::UsGovernment];

    /// The DNS suffix (without the leading dot) of a service in this cloud.
    pub fn dns_suffix(self, kind: ServiceKind) -> &'static str {
        match (self, kind) {
            (Cloud::Public, ServiceKind::Vault) => "vault.azure.net",
            (Cloud::Public, ServiceKind::ManagedHsm) => "managedhsm.azure.net",
            (Cloud::China, ServiceKind::Vault) => "vault.azure.cn",
            (Cloud::China, ServiceKind::ManagedHsm) => "managedhsm.azure.cn",
            (Cloud::UsGovernment, ServiceKind::Vault) => "vault.usgovcloudapi.net",
            (Cloud::UsGovernment, ServiceKind::ManagedHsm) => "managedhsm.usgovcloudapi.net",
        }
    }

    /// The token audience (OAuth "resource") for a service in this cloud.
    pub fn audience(self, kind: ServiceKind) -> crate::Audience {
        crate::Audience::from_known(format!("https://{}", self.dns_suffix(kind)))
    }

    /// The Entra ID authority host of this cloud, for the credential sources that talk to Entra.
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com",
            Cloud::China => "https://login.chinacloudapi.cn",
            Cloud::UsGovernment => "https://login.microsoftonline.us",
        }
    }

    /// Parses a cloud name as an operator would write it in a configuration file.
    /// Accepts `public`/`AzurePublicCloud`, `china`/`AzureChinaCloud`,
    /// `usgov`/`usgovernment`/`AzureUSGovernment` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Cloud> {
        match name.trim().to_ascii_lowercase().as_str() {
            "public" | "azurepubliccloud" | "azurecloud" | "azure" => Some(Cloud::Public),
            "china" | "azurechinacloud" => Some(Cloud::China),
            "usgov" | "usgovernment" | "azureusgovernment" | "azureusgovernmentcloud" => {
                Some(Cloud::UsGovernment)
            }
            _ => None,
        }
    }

    /// Finds which cloud and service a lowercase host name belongs to, returning the part
    /// before the suffix (the vault or HSM name, still unvalidated).
    pub(crate) fn classify_host(host: &str) -> Option<(Cloud, ServiceKind, &str)> {
        for cloud in Cloud::ALL {
            for kind in [ServiceKind::Vault, ServiceKind::ManagedHsm] {
                let suffix = cloud.dns_suffix(kind);
                if let Some(prefix) = host.strip_suffix(suffix) {
                    if let Some(name) = prefix.strip_suffix('.') {
                        return Some((cloud, kind, name));
                    }
                }
            }
        }
        None
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cloud::Public => "public",
            Cloud::China => "china",
            Cloud::UsGovernment => "usgov",
        })
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceKind::Vault => "vault",
            ServiceKind::ManagedHsm => "managedHsm",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cloud_has_distinct_suffixes_and_audiences() {
        let mut seen = std::collections::HashSet::new();
        for cloud in Cloud::ALL {
            for kind in [ServiceKind::Vault, ServiceKind::ManagedHsm] {
                assert!(seen.insert(cloud.dns_suffix(kind)));
                assert_eq!(
                    cloud.audience(kind).as_str(),
                    format!("https://{}", cloud.dns_suffix(kind))
                );
            }
        }
    }

    #[test]
    fn classify_host_needs_a_label_boundary() {
        assert_eq!(
            Cloud::classify_host("myvault.vault.azure.net"),
            Some((Cloud::Public, ServiceKind::Vault, "myvault"))
        );
        assert_eq!(
            Cloud::classify_host("h.managedhsm.usgovcloudapi.net"),
            Some((Cloud::UsGovernment, ServiceKind::ManagedHsm, "h"))
        );
        assert_eq!(Cloud::classify_host("evilvault.azure.net"), None);
        assert_eq!(Cloud::classify_host("vault.azure.net"), None);
        assert_eq!(Cloud::classify_host("vault.azure.net.evil.com"), None);
    }

    #[test]
    fn cloud_names() {
        assert_eq!(Cloud::from_name("AzureChinaCloud"), Some(Cloud::China));
        assert_eq!(Cloud::from_name("USGov"), Some(Cloud::UsGovernment));
        assert_eq!(Cloud::from_name("public"), Some(Cloud::Public));
        assert_eq!(Cloud::from_name("mars"), None);
    }
}
