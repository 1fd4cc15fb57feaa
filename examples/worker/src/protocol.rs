//! What travels over NATS: the job a caller sends and the reply a worker answers with.
//!
//! ```json
//! {"id": "j-1", "tenant": "acme", "pool": "io",
//!  "steps": [{"type": "http_call", "url": "http://127.0.0.1:9000/v1/x"},
//!            {"type": "fs_write", "path": "out/j-1.txt", "data": "hello"},
//!            {"type": "fs_read", "path": "out/j-1.txt"},
//!            {"type": "sleep", "ms": 10}]}
//! ```
//!
//! Replies: `{"id": "j-1", "status": "ok", "worker": "w-1", "pool": "io", "steps": [...]}` with
//! `status` one of `ok`, `failed`, `timeout`, `overloaded`, `invalid`.
//!
//! Both sides read these types: the worker (which also validates a job, in its binary) and the
//! caller's [`client`](crate::client), so the two cannot drift apart.

use serde::{Deserialize, Serialize};

/// The header a caller states its deadline in, in milliseconds (the worker also reads
/// `grpc-timeout` and Envoy's `x-envoy-expected-rq-timeout-ms`; the tightest wins).
pub const REQUEST_TIMEOUT_HEADER: &str = "x-request-timeout-ms";

/// One step, as sent.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// An HTTP request to a provider; 2xx is success.
    HttpCall {
        /// `http://` only.
        url: String,
        /// Default GET.
        #[serde(default)]
        method: Option<String>,
        /// Sent as the request body.
        #[serde(default)]
        body: Option<String>,
    },
    /// Read a file under the worker's FS root.
    FsRead {
        /// Relative to the FS root.
        path: String,
    },
    /// Write (create or replace) a file under the worker's FS root.
    FsWrite {
        /// Relative to the FS root.
        path: String,
        /// The file's new content.
        #[serde(default)]
        data: String,
    },
    /// Wait, standing in for work.
    Sleep {
        /// How long.
        ms: u64,
    },
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

/// Every [`Step::kind`].
pub const STEP_KINDS: [&str; 4] = ["http_call", "fs_read", "fs_write", "sleep"];

/// A job, as sent.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobSpec {
    /// Echoed in the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A metrics label, through the worker's allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The worker's default pool when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Run in order; the first that fails ends the job.
    pub steps: Vec<Step>,
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
    /// The status as it reads on the wire.
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
    /// The step's [`Step::kind`].
    #[serde(rename = "type")]
    pub kind: String,
    /// How the step ended (`ok`, `failed` or `timeout`).
    pub status: Status,
    /// How long it ran.
    pub ms: f64,
    /// What went wrong, or what a successful step has to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The reply to a job, sent to its reply subject.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    /// The job's `id`, or one the worker made up.
    pub id: String,
    /// What became of the job.
    pub status: Status,
    /// Which worker answered (its `WORKER_ID`): in a queue group, the caller's only way to
    /// tell its workers apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The pool the job went to, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The steps that ran, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// What went wrong, with the numbers (capacity and depth, budget and elapsed, attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On `overloaded`: when the pool that turned the job away expects room again, in
    /// milliseconds (its queue's `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Reply {
    /// The reply to a job that did not run: nothing but its status and why.
    pub fn refused(id: String, pool: Option<String>, status: Status, error: String) -> Self {
        Reply {
            id,
            status,
            worker: None,
            pool,
            steps: Vec::new(),
            error: Some(error),
            retry_after_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let answered = Reply {
            worker: Some("w-7".into()),
            retry_after_ms: Some(1000),
            ..reply
        };
        let text = serde_json::to_string(&answered).unwrap();
        assert_eq!(
            text,
            r#"{"id":"j","status":"overloaded","worker":"w-7","pool":"gpu","error":"full","retry_after_ms":1000}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), answered);
    }

    #[test]
    fn a_job_spec_serialises_as_the_worker_reads_it() {
        let spec = JobSpec {
            id: Some("j".into()),
            tenant: None,
            pool: Some("io".into()),
            steps: vec![Step::Sleep { ms: 5 }],
        };
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            r#"{"id":"j","pool":"io","steps":[{"type":"sleep","ms":5}]}"#
        );
    }
}
