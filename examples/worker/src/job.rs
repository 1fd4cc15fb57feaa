//! The job format (JSON on the wire) and the reply.
//!
//! ```json
//! {"id": "j-1", "tenant": "acme", "pool": "io",
//!  "steps": [{"type": "http_call", "url": "http://127.0.0.1:9000/v1/x"},
//!            {"type": "fs_write", "path": "out/j-1.txt", "data": "hello"},
//!            {"type": "fs_read", "path": "out/j-1.txt"},
//!            {"type": "sleep", "ms": 10}]}
//! ```
//!
//! Replies: `{"id": "j-1", "status": "ok", "pool": "io", "steps": [...]}` with `status` one of
//! `ok`, `failed`, `timeout`, `overloaded`, `invalid`.

use serde::{Deserialize, Serialize};
use tower_deadline::Deadline;

/// Most steps in one job.
pub const MAX_STEPS: usize = 64;
/// Longest `sleep` step, in milliseconds (the deadline cap bounds it further when on).
pub const MAX_SLEEP_MS: u64 = 600_000;

/// One step, as sent.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// An HTTP request to a provider; 2xx is success.
    HttpCall {
        url: String,
        #[serde(default)]
        method: Option<String>,
        #[serde(default)]
        body: Option<String>,
    },
    /// Read a file under the worker's FS root.
    FsRead { path: String },
    /// Write (create or replace) a file under the worker's FS root.
    FsWrite {
        path: String,
        #[serde(default)]
        data: String,
    },
    /// Wait, standing in for work.
    Sleep { ms: u64 },
}

impl Step {
    /// The `step.type` label: four constants.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::HttpCall { .. } => "http_call",
            Step::FsRead { .. } => "fs_read",
            Step::FsWrite { .. } => "fs_write",
            Step::Sleep { .. } => "sleep",
        }
    }
}

pub const STEP_KINDS: [&str; 4] = ["http_call", "fs_read", "fs_write", "sleep"];

/// A job, as sent.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobSpec {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
    pub steps: Vec<Step>,
}

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

/// What became of a job.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every step succeeded.
    Ok,
    /// A step failed (provider error, I/O error); later steps did not run.
    Failed,
    /// The job's deadline or a step's budget passed; later steps did not run.
    Timeout,
    /// The pool was full (or draining): the job never started. The caller may resubmit.
    Overloaded,
    /// The message was not a valid job: nothing ran.
    Invalid,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Overloaded => "overloaded",
            Status::Invalid => "invalid",
        }
    }
}

/// One step's result, in the reply.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Status,
    pub ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The reply to a job, sent to its reply subject.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// What went wrong, with the numbers (capacity and depth, budget and elapsed, attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn refused(id: String, pool: Option<String>, status: Status, error: String) -> Self {
        Reply {
            id,
            status,
            pool,
            steps: Vec::new(),
            error: Some(error),
        }
    }
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

    #[test]
    fn replies_round_trip() {
        let reply = Reply::refused(
            "j".into(),
            Some("gpu".into()),
            Status::Overloaded,
            "full".into(),
        );
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            text,
            r#"{"id":"j","status":"overloaded","pool":"gpu","error":"full"}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
    }
}
