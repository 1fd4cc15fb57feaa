//! Finding one kind of error in another's `source()` chain: what the proxy answers, the retry
//! classifier's refinement and the edge's count of closed connections each look for.

use std::error::Error;

/// The first error of type `E` in `error`'s `source()` chain, `error` included.
pub(crate) fn find<'e, E: Error + 'static>(error: &'e (dyn Error + 'static)) -> Option<&'e E> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        source = e.source();
    }
    None
}
