//! Model test of the admission state machine: random single-threaded sequences of calls, polls,
//! drops and completions, compared step by step with a plain-Rust model of the rules (FIFO
//! hand-over, reject newest or drop oldest, counts freed on drop). Deterministic (seeded), so a
//! failure names the seed that reproduces it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::oneshot;
use tower::{BoxError, Service, service_fn};
use tower_bounded_queue::{BoundedQueueBuilder, Overflow, OverloadReason, Overloaded};
use tower_layer::Layer;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Holds a slot (running, or handed one and not yet polled).
    Admitted,
    Waiting,
    Rejected(OverloadReason),
}

struct Model {
    concurrency: usize,
    capacity: usize,
    drop_oldest: bool,
    admitted: HashSet<u32>,
    queue: VecDeque<u32>,
    state: HashMap<u32, Expect>,
}

impl Model {
    fn call(&mut self, id: u32) {
        let state = if self.admitted.len() < self.concurrency && self.queue.is_empty() {
            self.admitted.insert(id);
            Expect::Admitted
        } else if self.queue.len() < self.capacity {
            self.queue.push_back(id);
            Expect::Waiting
        } else if self.drop_oldest && self.capacity > 0 {
            let victim = self.queue.pop_front().unwrap();
            self.state
                .insert(victim, Expect::Rejected(OverloadReason::DroppedOldest));
            self.queue.push_back(id);
            Expect::Waiting
        } else {
            Expect::Rejected(OverloadReason::Full)
        };
        self.state.insert(id, state);
    }

    fn release(&mut self, id: u32) {
        assert!(self.admitted.remove(&id));
        if let Some(next) = self.queue.pop_front() {
            self.admitted.insert(next);
            self.state.insert(next, Expect::Admitted);
        }
    }

    fn forget(&mut self, id: u32) {
        match self.state.remove(&id) {
            Some(Expect::Admitted) => self.release(id),
            Some(Expect::Waiting) => self.queue.retain(|w| *w != id),
            _ => {}
        }
    }
}

type Call = Pin<Box<dyn Future<Output = Result<u32, BoxError>>>>;

fn run(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let concurrency = rng.usize(1..4);
    let capacity = rng.usize(0..4);
    let drop_oldest = rng.bool();
    let overflow = if drop_oldest {
        Overflow::DropOldest
    } else {
        Overflow::RejectNewest
    };
    let layer = BoundedQueueBuilder::new(concurrency)
        .capacity(capacity)
        .overflow(overflow)
        .build();
    let handle = layer.handle();

    let receivers: Arc<Mutex<HashMap<u32, oneshot::Receiver<()>>>> = Arc::default();
    let entered: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let mut svc = layer.layer(service_fn({
        let receivers = receivers.clone();
        let entered = entered.clone();
        move |id: u32| {
            let rx = receivers.lock().unwrap().remove(&id).expect("called once");
            entered.lock().unwrap().insert(id);
            async move {
                let _ = rx.await;
                Ok::<_, Infallible>(id)
            }
        }
    }));

    let mut model = Model {
        concurrency,
        capacity,
        drop_oldest,
        admitted: HashSet::new(),
        queue: VecDeque::new(),
        state: HashMap::new(),
    };
    let mut calls: HashMap<u32, Call> = HashMap::new();
    let mut senders: HashMap<u32, oneshot::Sender<()>> = HashMap::new();
    let mut cx = Context::from_waker(Waker::noop());
    let context = |step: usize| {
        format!(
            "seed {seed} step {step} (concurrency {concurrency}, capacity {capacity}, drop_oldest {drop_oldest})"
        )
    };

    for (step, id) in (0..200u32).enumerate() {
        let live: Vec<u32> = {
            let mut v: Vec<u32> = calls.keys().copied().collect();
            v.sort_unstable();
            v
        };
        match rng.u8(..4) {
            0 | 1 if live.len() < 12 => {
                let (tx, rx) = oneshot::channel();
                receivers.lock().unwrap().insert(id, rx);
                senders.insert(id, tx);
                calls.insert(id, Box::pin(svc.call(id)));
                model.call(id);
            }
            _ if live.is_empty() => continue,
            2 => {
                // Poll one call; if it is running inside the service, sometimes let it finish.
                let id = live[rng.usize(..live.len())];
                let running = entered.lock().unwrap().contains(&id);
                if running && rng.bool() {
                    senders.remove(&id).unwrap().send(()).unwrap();
                }
                let poll = calls.get_mut(&id).unwrap().as_mut().poll(&mut cx);
                let expected = model.state[&id];
                match (expected, poll) {
                    (Expect::Admitted, Poll::Ready(Ok(got))) => {
                        assert_eq!(got, id);
                        assert!(running, "{}", context(step));
                        calls.remove(&id);
                        model.state.remove(&id);
                        model.release(id);
                    }
                    (Expect::Admitted, Poll::Pending) => {
                        assert!(entered.lock().unwrap().contains(&id), "{}", context(step));
                    }
                    (Expect::Waiting, Poll::Pending) => {
                        assert!(!entered.lock().unwrap().contains(&id), "{}", context(step));
                    }
                    (Expect::Rejected(reason), Poll::Ready(Err(error))) => {
                        let overloaded = error
                            .downcast_ref::<Overloaded>()
                            .unwrap_or_else(|| panic!("{error} at {}", context(step)));
                        assert_eq!(overloaded.reason(), reason, "{}", context(step));
                        assert!(!entered.lock().unwrap().contains(&id), "{}", context(step));
                        calls.remove(&id);
                        model.state.remove(&id);
                    }
                    (expected, poll) => panic!(
                        "{}: call {id} expected {expected:?}, polled {:?}",
                        context(step),
                        poll.map(|r| r.map_err(|e| e.to_string()))
                    ),
                }
            }
            _ => {
                // The caller goes away: drop the future wherever it is.
                let id = live[rng.usize(..live.len())];
                calls.remove(&id);
                senders.remove(&id);
                model.forget(id);
            }
        }
        assert_eq!(
            handle.in_flight(),
            model.admitted.len(),
            "{}",
            context(step)
        );
        assert_eq!(handle.depth(), model.queue.len(), "{}", context(step));
        assert!(handle.in_flight() <= concurrency && handle.depth() <= capacity);
    }
    drop(calls);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0), "seed {seed}");
}

#[test]
fn admission_matches_the_model() {
    for seed in 0..2000 {
        run(seed);
    }
}
