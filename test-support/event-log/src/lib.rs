//! A `tracing` subscriber that keeps every event it sees, so a test can assert what a layer
//! logged: level, target, message and fields, each field as the text it would print.
//!
//! ```
//! let (log, events) = event_log::EventLog::new();
//! tracing::subscriber::with_default(log, || {
//!     tracing::debug!(attempt = 2, "retry scheduled");
//! });
//! let events = events.take();
//! assert_eq!(events[0].message, "retry scheduled");
//! assert_eq!(events[0].field("attempt"), Some("2"));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One recorded event.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Its level.
    pub level: Level,
    /// Its target (the emitting module's path unless set).
    pub target: String,
    /// The `message` field, empty when it has none.
    pub message: String,
    /// Every other field, in the order written, as `(name, text)`.
    pub fields: Vec<(String, String)>,
}

impl Recorded {
    /// The text of field `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The events recorded so far, shared with the subscriber.
#[derive(Clone, Debug, Default)]
pub struct Events(Arc<Mutex<Vec<Recorded>>>);

impl Events {
    /// Takes every event recorded so far.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The subscriber: records every event at every level, and gives spans ids without recording
/// them.
#[derive(Debug)]
pub struct EventLog {
    events: Events,
    next_span: AtomicU64,
}

impl EventLog {
    /// A subscriber and the handle its events are read from.
    pub fn new() -> (Self, Events) {
        let events = Events::default();
        let log = EventLog {
            events: events.clone(),
            next_span: AtomicU64::new(1),
        };
        (log, events)
    }
}

struct Fields<'a>(&'a mut Recorded);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, text: String) {
        if field.name() == "message" {
            self.0.message = text;
        } else {
            self.0.fields.push((field.name().to_string(), text));
        }
    }
}

impl Subscriber for EventLog {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut recorded = Recorded {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut recorded));
        self.events.0.lock().unwrap().push(recorded);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
