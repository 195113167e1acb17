//! A bound on the request bodies a server holds read whole at once, across every route
//! that shares it.
//!
//! A layer reads a body whole before deciding when the decision needs it (a
//! `Content-Digest` to check, a route that requires body coverage, a call to hold). What
//! decides that is the request's head, which costs a client nothing to write: without a
//! bound, clients sending many requests at once (two hundred HTTP/2 streams on one
//! connection, each up to [`crate::AAuthLayer::max_body`]) make the server hold that much
//! memory until the bodies' deadlines, verified or not. With a [`BodyBudget`], a body
//! that would take the bytes held past it is refused with `503` and `Retry-After`
//! ([`crate::Refusal::Busy`]) as its bytes arrive, and a request's bytes are given back
//! when its answer is ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of request bodies that the layers sharing this budget may hold at once. Cheap to
/// clone (the clones share the count).
///
/// ```
/// use aauth_resource::BodyBudget;
/// let budget = BodyBudget::new(64 * 1024 * 1024);
/// assert_eq!(budget.available(), 64 * 1024 * 1024);
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
    pub(crate) fn hold(&self) -> BudgetHold {
        BudgetHold {
            left: Arc::clone(&self.left),
            taken: 0,
        }
    }
}

/// The bytes one request holds of a [`BodyBudget`], given back when it is dropped.
#[derive(Debug)]
pub(crate) struct BudgetHold {
    left: Arc<AtomicUsize>,
    taken: usize,
}

impl BudgetHold {
    /// Takes `n` more bytes; `false` (nothing taken) when fewer are left.
    pub(crate) fn grow(&mut self, n: usize) -> bool {
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
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        self.left.fetch_add(self.taken, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::BodyBudget;

    #[test]
    fn holds_take_what_is_left_and_give_it_back() {
        let budget = BodyBudget::new(10);
        let mut a = budget.hold();
        assert!(a.grow(6));
        let mut b = budget.hold();
        assert!(!b.grow(5), "only 4 left");
        assert!(b.grow(4));
        assert_eq!(budget.available(), 0);
        drop(a);
        assert_eq!(budget.available(), 6);
        drop(b);
        assert_eq!(budget.available(), 10);
    }
}
