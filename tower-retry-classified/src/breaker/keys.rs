//! Which breaker a call goes through: the layer's one breaker ([`Single`], the default), or one
//! per key that a function reads from the request ([`KeyedBy`], e.g. the upstream's authority).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use opentelemetry::metrics::Meter;

use super::config::BreakerConfig;
use super::shared::{CircuitHandle, Shared};

/// What a breaker is made from: shared by every breaker of one layer. (Public only for the
/// sealed [`Keying`] trait; it cannot be named outside this crate.)
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Recipe {
    pub(crate) config: BreakerConfig,
    pub(crate) name: Cow<'static, str>,
    pub(crate) meter: Option<Meter>,
}

impl Recipe {
    pub(crate) fn build(&self, name: Cow<'static, str>) -> Arc<Shared> {
        let global;
        let meter = match &self.meter {
            Some(meter) => meter,
            None => {
                global = opentelemetry::global::meter("tower-retry-classified");
                &global
            }
        };
        Shared::new(self.config.clone(), name, meter)
    }
}

/// How a layer picks the breaker of a call. Implemented by [`Single`] and [`KeyedBy`] only.
pub trait Keying<Req>: sealed::Sealed + Clone {
    #[doc(hidden)]
    fn breaker(&self, recipe: &Recipe, request: &Req) -> CircuitHandle;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Single {}
    impl<F> Sealed for super::KeyedBy<F> {}
}

/// One breaker for every call of the layer's services (the default).
#[derive(Clone, Debug, Default)]
pub struct Single {
    breaker: Arc<OnceLock<CircuitHandle>>,
}

impl Single {
    pub(crate) fn handle(&self, recipe: &Recipe) -> CircuitHandle {
        self.breaker
            .get_or_init(|| CircuitHandle {
                shared: recipe.build(recipe.name.clone()),
            })
            .clone()
    }
}

impl<Req> Keying<Req> for Single {
    fn breaker(&self, recipe: &Recipe, _: &Req) -> CircuitHandle {
        self.handle(recipe)
    }
}

/// A breaker per key, the key read from each request by a function (see
/// [`CircuitBreakerBuilder::key_fn`](super::CircuitBreakerBuilder::key_fn)). Calls without a key,
/// and keys beyond the first [`max_keys`](super::CircuitBreakerBuilder::max_keys), share the
/// layer's own breaker, so that the number of breakers and of their metric series stays
/// bounded.
pub struct KeyedBy<F> {
    key: Arc<F>,
    state: Arc<KeyedState>,
}

impl<F> Clone for KeyedBy<F> {
    fn clone(&self) -> Self {
        Self {
            key: Arc::clone(&self.key),
            state: Arc::clone(&self.state),
        }
    }
}

impl<F> std::fmt::Debug for KeyedBy<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedBy").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct KeyedState {
    fallback: Single,
    breakers: Mutex<HashMap<String, CircuitHandle>>,
    max_keys: usize,
}

impl<F> KeyedBy<F> {
    pub(crate) fn new(key: F, max_keys: usize) -> Self {
        Self {
            key: Arc::new(key),
            state: Arc::new(KeyedState {
                max_keys,
                ..KeyedState::default()
            }),
        }
    }

    /// The same key function with no breaker made yet.
    pub(crate) fn renewed(&self, max_keys: usize) -> Self {
        Self {
            key: Arc::clone(&self.key),
            state: Arc::new(KeyedState {
                max_keys,
                ..KeyedState::default()
            }),
        }
    }

    /// The breaker of `key`, if it has one yet.
    pub(crate) fn handle_of(&self, key: &str) -> Option<CircuitHandle> {
        let breakers = self
            .state
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        breakers.get(key).cloned()
    }

    pub(crate) fn fallback(&self, recipe: &Recipe) -> CircuitHandle {
        self.state.fallback.handle(recipe)
    }
}

impl<F, Req> Keying<Req> for KeyedBy<F>
where
    F: Fn(&Req) -> Option<&str>,
{
    fn breaker(&self, recipe: &Recipe, request: &Req) -> CircuitHandle {
        let Some(key) = (self.key)(request) else {
            return self.fallback(recipe);
        };
        let mut breakers = self
            .state
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = breakers.get(key) {
            return handle.clone();
        }
        if breakers.len() >= self.state.max_keys {
            drop(breakers);
            return self.fallback(recipe);
        }
        let handle = CircuitHandle {
            shared: recipe.build(Cow::Owned(key.to_owned())),
        };
        breakers.insert(key.to_owned(), handle.clone());
        handle
    }
}
