//! The `Valid` status condition: how a rejected policy says why.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type saying whether the spec passed validation.
pub const VALID_CONDITION: &str = "Valid";

/// The `Valid` condition for a validation result: True/`Valid`, or
/// False/`Invalid` with every problem in the message (`; `-separated).
/// The caller supplies the time so this stays pure.
pub fn valid_condition(
    result: &Result<(), Vec<String>>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    let (status, reason, message) = match result {
        Ok(()) => ("True", "Valid", "policy is valid and applied".to_owned()),
        Err(problems) => (
            "False",
            "Invalid",
            format!(
                "policy rejected, nothing of it applied: {}",
                problems.join("; ")
            ),
        ),
    };
    Condition {
        type_: VALID_CONDITION.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation,
        last_transition_time: now,
    }
}
