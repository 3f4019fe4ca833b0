//! Errors the way the CNI spec reports them: a well-known code, the spec's
//! short `msg`, and `details` that tell the operator what to fix.

pub use rscni_types::error::Error as CniError;
use rscni_types::{types::ErrorResult, version::SpecVersion};

/// Plugin-specific codes. The spec reserves 0-99; these are documented in
/// `docs/cni.md`.
pub const AGENT_REJECTED: u32 = 100;
pub const KERNEL_REFUSED: u32 = 101;
pub const CHECK_FAILED: u32 = 102;

/// The agent answered, but refused the request (its gRPC status is in `details`).
pub fn agent_rejected(details: impl Into<String>) -> CniError {
    CniError::Custom(
        AGENT_REJECTED,
        "Sluice agent rejected the request".to_owned(),
        details.into(),
    )
}

/// A netlink or namespace operation failed in the kernel.
pub fn kernel_refused(details: impl Into<String>) -> CniError {
    CniError::Custom(
        KERNEL_REFUSED,
        "Kernel refused a network operation".to_owned(),
        details.into(),
    )
}

/// CHECK found the container's networking differs from what ADD set up.
pub fn check_failed(details: impl Into<String>) -> CniError {
    CniError::Custom(
        CHECK_FAILED,
        "Container networking is not as expected".to_owned(),
        details.into(),
    )
}

/// The spec's error JSON (`cniVersion`, `code`, `msg`, `details`).
pub fn error_json(version: SpecVersion, err: &CniError) -> String {
    // ErrorResult holds only strings and a number: serializing cannot fail.
    serde_json::to_string(&ErrorResult::new(version, err)).unwrap_or_else(|_| {
        format!(
            r#"{{"code":{},"msg":"failed to render error"}}"#,
            u32::from(err)
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parsed(version: SpecVersion, err: &CniError) -> Value {
        serde_json::from_str(&error_json(version, err)).expect("error JSON parses")
    }

    #[test]
    fn error_json_has_the_spec_fields() {
        let err = CniError::TryAgainLater("cannot reach /run/sluice/agent.sock".into());
        assert_eq!(
            parsed(SpecVersion::new(1, 0, 0), &err),
            json!({
                "cniVersion": "1.0.0",
                "code": 11,
                "msg": "Try again later",
                "details": "cannot reach /run/sluice/agent.sock",
            })
        );
    }

    #[test]
    fn well_known_codes() {
        let cases = [
            (CniError::IncompatibleVersion(String::new()), 1),
            (CniError::UnsupportedNetworkConfiguration(String::new()), 2),
            (CniError::NotExist(String::new()), 3),
            (CniError::InvalidEnvValue(String::new()), 4),
            (CniError::IOFailure(String::new()), 5),
            (CniError::FailedToDecode(String::new()), 6),
            (CniError::InvalidNetworkConfig(String::new()), 7),
            (CniError::TryAgainLater(String::new()), 11),
            (CniError::PluginNotAvailable(String::new()), 50),
            (
                CniError::PluginNotAvailableLimitedConnectivity(String::new()),
                51,
            ),
            (agent_rejected("x"), 100),
            (kernel_refused("x"), 101),
            (check_failed("x"), 102),
        ];
        for (err, code) in cases {
            assert_eq!(parsed(SpecVersion::CURRENT, &err)["code"], code, "{err:?}");
        }
    }

    #[test]
    fn plugin_codes_carry_their_own_msg() {
        let v = parsed(
            SpecVersion::CURRENT,
            &agent_rejected("RESOURCE_EXHAUSTED: pod CIDR full"),
        );
        assert_eq!(v["msg"], "Sluice agent rejected the request");
        assert_eq!(v["details"], "RESOURCE_EXHAUSTED: pod CIDR full");
    }
}
