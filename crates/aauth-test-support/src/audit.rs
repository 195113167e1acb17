//! The audit log's paging contract, for every store that keeps one (feature `metadata`).

use std::future::Future;

use aauth_metadata::audit::{AuditAction, AuditEvent, AuditPage, AuditQuery};

/// Records seven `approved` events at `now + 10…`, each with a scope and a request, then
/// reads them two at a time, each page from the cursor of the one before: every event
/// exactly once, newest first, scope and request kept, and no cursor after the last page;
/// then the same oldest first, and the first of them in one read of one event.
/// `record` appends an event to the store; `read` reads one page. The store must hold no
/// other `approved` event at or after `now + 10`.
///
/// # Panics
///
/// When the store breaks the contract (this is a test).
pub async fn pages_contract<R, RF, Q, QF>(now: u64, record: R, read: Q)
where
    R: Fn(AuditEvent) -> RF,
    RF: Future<Output = ()>,
    Q: Fn(AuditQuery) -> QF,
    QF: Future<Output = AuditPage>,
{
    let mut all = Vec::new();
    for i in 0..7u64 {
        let e = AuditEvent::new(now + 10 + i, AuditAction::Approved, format!("page {i}"))
            .account("alice")
            .scope("read write")
            .request(format!("pending-{i}"));
        record(e.clone()).await;
        all.push(e);
    }
    all.reverse();
    let q = AuditQuery::default()
        .action(AuditAction::Approved)
        .since(now + 10)
        .limit(2);
    let mut got = Vec::new();
    let mut page_q = q.clone();
    for pages in 1.. {
        let page = read(page_q.clone()).await;
        got.extend(page.events.iter().cloned());
        match page.next {
            Some(next) => {
                assert_eq!(page.events.len(), 2, "page {pages} is full");
                page_q = q.clone().before(next);
            }
            None => {
                assert_eq!(pages, 4, "seven events, two a page");
                break;
            }
        }
    }
    assert_eq!(got, all);
    // Oldest first: the same events the other way, the cursors leading to later ones;
    // the first event in one step.
    all.reverse();
    let q = q.oldest_first();
    let mut got = Vec::new();
    let mut page_q = q.clone();
    while let Some(next) = {
        let page = read(page_q.clone()).await;
        got.extend(page.events.iter().cloned());
        page.next
    } {
        page_q = q.clone().before(next);
    }
    assert_eq!(got, all, "oldest first");
    let first = read(q.limit(1)).await;
    assert_eq!(
        first.events.first(),
        all.first(),
        "the first event in one read"
    );
}
