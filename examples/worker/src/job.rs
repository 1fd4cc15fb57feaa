//! A job as the worker resolves it, and the checks a job must pass before it runs.
//!
//! The wire format itself (the job, the reply) is the library's [`worker::protocol`], shared
//! with the caller's client; re-exported here so the worker's modules name it in one place.

use tower_deadline::Deadline;

pub use worker::protocol::{JobSpec, Reply, STEP_KINDS, Status, Step, StepReport};

/// Most steps in one job.
pub const MAX_STEPS: usize = 64;
/// Longest `sleep` step, in milliseconds (the deadline cap bounds it further when on).
pub const MAX_SLEEP_MS: u64 = 600_000;

/// A job as the services see it: validated, with its pool and deadline resolved.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    pub pool: String,
    pub steps: Vec<Step>,
    /// `None` when deadlines are off.
    pub deadline: Option<Deadline>,
}

/// Longest accepted `id` / `tenant` (longer ones are refused, not cut).
pub const MAX_FIELD_LEN: usize = 128;

/// Parses and validates a message payload; the error is the `invalid` reply's text.
pub fn parse(payload: &[u8], default_pool: &str) -> Result<JobSpec, String> {
    let mut spec: JobSpec =
        serde_json::from_slice(payload).map_err(|e| format!("not a job: {e}"))?;
    if spec.steps.is_empty() || spec.steps.len() > MAX_STEPS {
        return Err(format!("a job has 1 to {MAX_STEPS} steps"));
    }
    for field in [&spec.id, &spec.tenant, &spec.pool].into_iter().flatten() {
        if field.len() > MAX_FIELD_LEN {
            return Err(format!(
                "id, tenant and pool are at most {MAX_FIELD_LEN} bytes"
            ));
        }
    }
    for step in &spec.steps {
        if let Step::Sleep { ms } = step
            && *ms > MAX_SLEEP_MS
        {
            return Err(format!("sleep is at most {MAX_SLEEP_MS} ms"));
        }
    }
    if spec.pool.is_none() {
        spec.pool = Some(default_pool.to_string());
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step_type() {
        let spec = parse(
            br#"{"id":"j","tenant":"t","steps":[
                {"type":"http_call","url":"http://127.0.0.1:1/x","method":"POST","body":"b"},
                {"type":"fs_read","path":"a"},{"type":"fs_write","path":"a","data":"d"},
                {"type":"sleep","ms":5}]}"#,
            "cpu",
        )
        .unwrap();
        assert_eq!(spec.pool.as_deref(), Some("cpu"));
        let kinds: Vec<_> = spec.steps.iter().map(Step::kind).collect();
        assert_eq!(kinds, STEP_KINDS);
    }

    #[test]
    fn refuses_what_is_not_a_job() {
        for bad in [
            &br#"{}"#[..],
            br#"{"steps":[]}"#,
            br#"{"steps":[{"type":"rm_rf","path":"/"}]}"#,
            br#"{"steps":[{"type":"sleep","ms":5,"extra":1}]}"#,
            br#"{"steps":[{"type":"sleep","ms":999999999}]}"#,
            b"not json",
        ] {
            assert!(
                parse(bad, "cpu").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
