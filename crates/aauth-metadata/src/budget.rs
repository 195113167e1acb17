//! A bound on the request bodies a server holds read whole at once, across every
//! service that shares it.
//!
//! A role reads each request's body whole before it answers (an `EndpointService`, with
//! the `runtime` feature, hands the role the head and the whole body; the resource
//! layer, `aauth_resource::AAuthLayer`, reads a body whole when its decision needs it).
//! Each body is bounded (`serve::DEFAULT_BODY_LIMIT`, the layer's `max_body`), but not
//! how many are read at once: many connections, and many HTTP/2 streams on each, each
//! sending up to the limit and then waiting out the body's deadline, make the server hold
//! that much memory, before any of it is verified. With a [`BodyBudget`], a body that
//! would take the bytes held past it is refused (`503` with `Retry-After`) as its bytes
//! arrive, and a request's bytes are given back once its answer is ready.
//!
//! One type for both: `aauth_resource::BodyBudget` is this one (that crate depends on
//! this one without its features), so a server may share one budget between its role's
//! services and its resource layers. It needs no runtime: only `std`'s atomics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bytes of request bodies an `EndpointService` (feature `runtime`) holds at once by
/// default: 64 MiB (a thousand bodies at the default limit).
pub const DEFAULT_BODY_BUDGET: usize = 64 * 1024 * 1024;

/// Bytes of request bodies that the services sharing this budget may hold at once. Cheap
/// to clone (the clones share the count).
///
/// ```
/// use aauth_metadata::budget::BodyBudget;
///
/// let budget = BodyBudget::new(100);
/// let mut hold = budget.hold();
/// assert!(hold.grow(60));
/// assert!(!budget.hold().grow(41), "only 40 left");
/// assert_eq!(budget.available(), 40);
/// drop(hold);
/// assert_eq!(budget.available(), 100);
/// ```
#[derive(Debug, Clone)]
pub struct BodyBudget {
    left: Arc<AtomicUsize>,
}

impl BodyBudget {
    /// A budget of `bytes`.
    #[must_use]
    pub fn new(bytes: usize) -> Self {
        Self {
            left: Arc::new(AtomicUsize::new(bytes)),
        }
    }

    /// The bytes not held now.
    #[must_use]
    pub fn available(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }

    /// A hold of no bytes yet, grown as a body arrives.
    #[must_use]
    pub fn hold(&self) -> BudgetHold {
        BudgetHold {
            left: Arc::clone(&self.left),
            taken: 0,
        }
    }
}

impl Default for BodyBudget {
    /// A budget of [`DEFAULT_BODY_BUDGET`].
    fn default() -> Self {
        Self::new(DEFAULT_BODY_BUDGET)
    }
}

/// The bytes one request holds of a [`BodyBudget`], given back when it is dropped.
#[derive(Debug)]
pub struct BudgetHold {
    left: Arc<AtomicUsize>,
    taken: usize,
}

impl BudgetHold {
    /// Takes `n` more bytes; `false` (nothing taken) when fewer are left.
    #[must_use]
    pub fn grow(&mut self, n: usize) -> bool {
        let took = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok();
        if took {
            self.taken += n;
        }
        took
    }

    /// The bytes this hold has taken.
    #[must_use]
    pub fn taken(&self) -> usize {
        self.taken
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        self.left.fetch_add(self.taken, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::{BodyBudget, DEFAULT_BODY_BUDGET};

    #[test]
    fn holds_take_what_is_left_and_give_it_back() {
        let budget = BodyBudget::new(10);
        let mut a = budget.hold();
        assert!(a.grow(6));
        let mut b = budget.hold();
        assert!(!b.grow(5), "only 4 left");
        assert_eq!(b.taken(), 0, "a refused grow takes nothing");
        assert!(b.grow(4));
        assert_eq!(budget.available(), 0);
        assert!(!budget.hold().grow(1));
        drop(a);
        assert_eq!(budget.available(), 6);
        drop(b);
        assert_eq!(budget.available(), 10);
        assert_eq!(BodyBudget::default().available(), DEFAULT_BODY_BUDGET);
    }

    #[test]
    fn holds_taken_at_once_never_take_more_than_the_budget() {
        let budget = BodyBudget::new(1000);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut hold = budget.hold();
                    let mut took = 0;
                    for _ in 0..1000 {
                        if hold.grow(1) {
                            took += 1;
                        }
                    }
                    (hold, took)
                })
            })
            .collect();
        let held: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(held.iter().map(|(_, took)| took).sum::<usize>(), 1000);
        assert_eq!(budget.available(), 0);
        drop(held);
        assert_eq!(budget.available(), 1000);
    }
}
