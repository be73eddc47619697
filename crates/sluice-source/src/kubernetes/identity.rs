//! Who this instance is among its replicas: the pod name and namespace the downward API gives
//! (`POD_NAME`, `POD_NAMESPACE`) and the ordinal a StatefulSet puts at the end of the pod name.

/// This instance's name, namespace and ordinal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// `POD_NAME`, or `<hostname>-<pid>` outside a pod (unique per process, for the Lease).
    pub name: String,
    /// `POD_NAMESPACE`, when running in a pod.
    pub namespace: Option<String>,
    /// `--instance-ordinal`, else the trailing number of `POD_NAME` (`sluice-3` -> 3).
    pub ordinal: Option<u32>,
}

impl InstanceIdentity {
    /// Reads `POD_NAME` and `POD_NAMESPACE`; `ordinal_override` (`--instance-ordinal`) wins over
    /// the ordinal in the pod name.
    pub fn from_env(ordinal_override: Option<u32>) -> InstanceIdentity {
        let pod_name = non_empty_env("POD_NAME");
        let ordinal = ordinal_override.or_else(|| pod_name.as_deref().and_then(ordinal_of));
        let name = pod_name.unwrap_or_else(|| {
            let host = non_empty_env("HOSTNAME")
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                })
                .unwrap_or_else(|| "sluice".to_string());
            format!("{host}-{}", std::process::id())
        });
        InstanceIdentity {
            name,
            namespace: non_empty_env("POD_NAMESPACE"),
            ordinal,
        }
    }
}

/// The ordinal of a StatefulSet pod name: the number after its last `-` (`sluice-12` -> 12).
/// `None` when the name does not end in `-<digits>` (a Deployment's pod names end in a random
/// suffix such as `-7d9f8c6b5-x2x4q`, which has no ordinal).
pub fn ordinal_of(pod_name: &str) -> Option<u32> {
    let (_, digits) = pod_name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_trailing_number() {
        assert_eq!(ordinal_of("sluice-0"), Some(0));
        assert_eq!(ordinal_of("ingress-gw-12"), Some(12));
        assert_eq!(ordinal_of("sluice-7d9f8c6b5-x2x4q"), None);
        assert_eq!(ordinal_of("sluice"), None);
        assert_eq!(ordinal_of("sluice-"), None);
        assert_eq!(ordinal_of("sluice-+1"), None);
        assert_eq!(ordinal_of("sluice-99999999999"), None);
    }
}
