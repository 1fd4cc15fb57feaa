//! The [`Deadline`] type: an absolute point on tokio's clock, carried in request extensions and in a
//! task-local scope.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

thread_local! {
    // The deadline of the work this thread is polling, for code that has no request at hand. Set
    // only for the duration of one poll (or one synchronous call), so it follows the task: a
    // plain `Cell` swap instead of `tokio::task_local!`'s `RefCell`, because every request
    // through our layers enters it on each poll.
    static CURRENT: Cell<Option<Scope>> = const { Cell::new(None) };
}

/// The scope this thread is in, if any.
fn current_scope() -> Option<Scope> {
    CURRENT.try_with(Cell::get).ok().flatten()
}

/// Runs `f` with `scope` as the current one, restoring the previous one afterwards (also when
/// `f` panics).
fn with_scope<R>(scope: Scope, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|current| current.set(self.0));
        }
    }
    // Thread-local storage being torn down: run without a scope rather than fail.
    let Ok(previous) = CURRENT.try_with(|current| current.replace(Some(scope))) else {
        return f();
    };
    let _restore = Restore(previous);
    f()
}

/// What the task-local holds: the deadline, and whether an enclosing future of ours enforces it
/// (drops everything inside when it passes), so inner layers need not arm a timer of their own.
#[derive(Clone, Copy)]
struct Scope {
    deadline: Deadline,
    enforced: bool,
}

/// The latest instant by which a piece of work must be done.
///
/// A `Deadline` is absolute, so it can be handed from layer to layer, queued and retried without
/// each hop re-counting its budget: [`remaining`](Deadline::remaining) is always measured against
/// tokio's clock at the moment it is asked (which makes it exact under `tokio::time::pause()`).
///
/// It travels two ways:
/// - in a request's [`Extensions`](http::Extensions), where the server layer puts it;
/// - in a task-local scope ([`Deadline::current`]) around the inner service's future, for code that
///   has no request at hand (file I/O, database calls, outgoing connections).
///
/// ```
/// use std::time::Duration;
/// use tower_deadline::Deadline;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let deadline = Deadline::after(Duration::from_secs(2));
/// assert!(!deadline.is_expired());
/// assert!(deadline.remaining() <= Duration::from_secs(2));
///
/// // Inside a scope, code with no request at hand can still find it.
/// let seen = deadline.scope(async { Deadline::current() }).await;
/// assert_eq!(seen, Some(deadline));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

/// How far ahead an "unbounded" deadline lies; tokio's timer wheel treats this as never.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Deadline {
    /// A deadline at the given instant of tokio's clock.
    pub fn at(instant: Instant) -> Self {
        Self { at: instant }
    }

    /// A deadline `budget` from now. Absurdly large budgets saturate at about 30 years ahead
    /// instead of overflowing the clock.
    pub fn after(budget: Duration) -> Self {
        Self::after_from(Instant::now(), budget)
    }

    /// A deadline `budget` after `start`, saturating like [`Deadline::after`].
    pub(crate) fn after_from(start: Instant, budget: Duration) -> Self {
        let at = start
            .checked_add(budget.min(FAR_FUTURE))
            .unwrap_or_else(|| start + Duration::from_secs(86_400));
        Self { at }
    }

    /// The instant this deadline falls on.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left until the deadline, zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed (no time is left).
    pub fn is_expired(&self) -> bool {
        self.at <= Instant::now()
    }

    /// The earlier of two deadlines: the one that constrains more.
    pub fn earliest(self, other: Deadline) -> Deadline {
        if other.at < self.at { other } else { self }
    }

    /// The earlier of this deadline and an optional other one.
    pub fn earliest_with(self, other: Option<Deadline>) -> Deadline {
        match other {
            Some(other) => self.earliest(other),
            None => self,
        }
    }

    /// The deadline of the task-local scope this code runs in, if any.
    ///
    /// The server layer ([`DeadlineLayer`](crate::DeadlineLayer)) and the helpers
    /// ([`enforce`](crate::enforce)) set it around the futures they run.
    pub fn current() -> Option<Deadline> {
        current_scope().map(|scope| scope.deadline)
    }

    /// The deadline stored in request extensions, if any.
    pub fn from_extensions(extensions: &http::Extensions) -> Option<Deadline> {
        extensions.get::<Deadline>().copied()
    }

    /// The deadline that binds a request: the earliest of the one in its extensions and the
    /// task-local one. This is what retry, queue and client layers consult.
    pub fn effective(extensions: &http::Extensions) -> Option<Deadline> {
        match (Self::from_extensions(extensions), Self::current()) {
            (Some(a), Some(b)) => Some(a.earliest(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs `future` with this deadline as [`Deadline::current`]. Nested scopes never extend an
    /// outer deadline: on every poll the scope's deadline is the earliest of this one and the
    /// enclosing one.
    ///
    /// The scope only makes the deadline visible; use [`enforce`](crate::enforce) to also stop
    /// the future when it passes.
    pub fn scope<F: std::future::Future>(self, future: F) -> Scoped<F> {
        Scoped {
            inner: future,
            deadline: self,
        }
    }

    /// Runs `f` synchronously with this deadline (or an earlier enclosing one) as the current one.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        with_scope(self.visible_scope(), f)
    }

    /// The scope seen inside a plain (non-enforcing) scope of this deadline: the enclosing one if
    /// that is at least as tight (keeping its enforcement), else this one, unenforced.
    fn visible_scope(self) -> Scope {
        match current_scope() {
            Some(outer) if outer.deadline <= self => outer,
            _ => Scope {
                deadline: self,
                enforced: false,
            },
        }
    }

    /// Sets the scope for exactly this deadline, marked as enforced: for our own enforcing
    /// futures, whose deadline is never later than the enclosing one.
    pub(crate) fn enter_enforced<R>(self, f: impl FnOnce() -> R) -> R {
        let scope = Scope {
            deadline: self,
            enforced: true,
        };
        with_scope(scope, f)
    }

    /// Whether an enclosing future of ours already enforces a deadline no later than this one,
    /// so a timer for this one would never fire first.
    pub(crate) fn is_enforced_around(self) -> bool {
        current_scope().is_some_and(|scope| scope.enforced && scope.deadline <= self)
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = Instant::now();
        if self.at > now {
            write!(f, "deadline in {:?}", self.at - now)
        } else {
            write!(f, "deadline passed {:?} ago", now - self.at)
        }
    }
}

pin_project_lite::pin_project! {
    /// Future returned by [`Deadline::scope`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        #[pin]
        inner: F,
        deadline: Deadline,
    }
}

impl<F: std::future::Future> std::future::Future for Scoped<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let scope = this.deadline.visible_scope();
        let inner = this.inner;
        with_scope(scope, || inner.poll(cx))
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_on_tokio_clock() {
        let deadline = Deadline::after(Duration::from_millis(300));
        assert_eq!(deadline.remaining(), Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(deadline.remaining(), Duration::from_millis(200));
        assert!(!deadline.is_expired());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(deadline.remaining(), Duration::ZERO);
        assert!(deadline.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_budget_saturates() {
        let deadline = Deadline::after(Duration::MAX);
        assert!(deadline.remaining() >= Duration::from_secs(86_400 * 365));
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_picks_the_tighter_one() {
        let short = Deadline::after(Duration::from_secs(1));
        let long = Deadline::after(Duration::from_secs(2));
        assert_eq!(short.earliest(long), short);
        assert_eq!(long.earliest(short), short);
        assert_eq!(long.earliest_with(None), long);
    }

    #[tokio::test(start_paused = true)]
    async fn nested_scope_never_extends_outer() {
        let outer = Deadline::after(Duration::from_secs(1));
        let inner = Deadline::after(Duration::from_secs(5));
        let seen = outer
            .scope(inner.scope(async { Deadline::current() }))
            .await;
        assert_eq!(seen, Some(outer));
        assert_eq!(Deadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn effective_takes_earliest_of_extension_and_scope() {
        let mut extensions = http::Extensions::new();
        let ext = Deadline::after(Duration::from_secs(3));
        extensions.insert(ext);
        assert_eq!(Deadline::effective(&extensions), Some(ext));
        let scoped = Deadline::after(Duration::from_secs(1));
        let seen = scoped.sync_scope(|| Deadline::effective(&extensions));
        assert_eq!(seen, Some(scoped));
        assert_eq!(Deadline::effective(&http::Extensions::new()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn display_says_how_far_off() {
        let deadline = Deadline::after(Duration::from_millis(1500));
        assert_eq!(deadline.to_string(), "deadline in 1.5s");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(deadline.to_string(), "deadline passed 500ms ago");
    }
}
