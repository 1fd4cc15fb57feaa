//! Built-in low-cardinality names for errors of the inner service (`error.type`).

use std::any::Any;
use std::error::Error;

type BoxError = Box<dyn Error + Send + Sync>;

/// A name for well-known errors, looked up on the error itself or, for boxed
/// errors, along its `source()` chain.
pub(crate) fn builtin(err: &dyn Any) -> Option<&'static str> {
    if let Some(name) = name_of(err) {
        return Some(name);
    }
    let boxed = err.downcast_ref::<BoxError>()?;
    let mut next: Option<&(dyn Error + 'static)> = Some(&**boxed);
    while let Some(e) = next {
        if let Some(name) = name_of(e) {
            return Some(name);
        }
        next = e.source();
    }
    None
}

/// The two views an error is met in: the inner service's own error type (`dyn Any`) and a
/// link of a boxed error's `source()` chain (`dyn Error`). Both can downcast, so one list of
/// well-known errors serves both.
trait Downcast {
    fn get<T: Error + 'static>(&self) -> Option<&T>;
}

impl Downcast for dyn Any {
    fn get<T: Error + 'static>(&self) -> Option<&T> {
        self.downcast_ref()
    }
}

impl Downcast for dyn Error + 'static {
    fn get<T: Error + 'static>(&self) -> Option<&T> {
        self.downcast_ref()
    }
}

fn name_of<E: Downcast + ?Sized>(err: &E) -> Option<&'static str> {
    if let Some(io) = err.get::<std::io::Error>() {
        return (io.kind() == std::io::ErrorKind::TimedOut).then_some("timeout");
    }
    #[cfg(feature = "deadline")]
    {
        if err.get::<tower_deadline::DeadlineExceeded>().is_some() {
            return Some("timeout");
        }
        if err.get::<tower_deadline::ConnectTimeout>().is_some() {
            return Some("connect_timeout");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn names_timeouts_directly_and_in_chains() {
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(builtin(&io), Some("timeout"));
        let boxed: BoxError = Box::new(Wrapper(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        assert_eq!(builtin(&boxed), Some("timeout"));
        let other: BoxError = "nope".into();
        assert_eq!(builtin(&other), None);
        assert_eq!(builtin(&42u8), None);
    }

    #[cfg(feature = "deadline")]
    #[test]
    fn names_deadline_errors() {
        use std::time::Duration;
        let e = tower_deadline::DeadlineExceeded::new(
            tower_deadline::Stage::Handling,
            Duration::from_millis(10),
            Duration::from_millis(12),
        );
        let boxed: BoxError = Box::new(e.clone());
        assert_eq!(builtin(&e), Some("timeout"));
        assert_eq!(builtin(&boxed), Some("timeout"));
    }
}
