//! The statement an [`AuditQuery`] becomes in SQL, for the SQLite and PostgreSQL logs:
//! one list of filters, each backend writing its own parameter marks and values.

use super::AuditQuery;

/// A parameter of the statement.
pub(crate) enum Value<'a> {
    Text(&'a str),
    Int(i64),
}

fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// The `SELECT` of the page `q` asks for, its `n`th parameter written `{mark}n` (`?` for
/// SQLite, `$` for PostgreSQL), and the parameters in order. Only the filters asked for
/// are in the statement, so that the planner sees each column it may use an index on
/// (`(agent, seq)`, `(account, seq)`, `at`), where a generic `? IS NULL OR agent = ?`
/// reads the whole table.
pub(crate) fn select<'q>(q: &'q AuditQuery, mark: char) -> (String, Vec<Value<'q>>) {
    let text = |v: &'q Option<String>| v.as_deref().map(Value::Text);
    let filters: [(&str, Option<Value<'q>>); 7] = [
        ("agent = ?", text(&q.agent)),
        ("resource = ?", text(&q.resource)),
        ("account = ?", text(&q.account)),
        ("action = ?", q.action.map(|a| Value::Text(a.as_str()))),
        ("at >= ?", q.since.map(|t| Value::Int(secs(t)))),
        ("at <= ?", q.until.map(|t| Value::Int(secs(t)))),
        // The cursor and the order: newest first, or oldest first.
        (
            if q.oldest_first { "seq > ?" } else { "seq < ?" },
            q.before.map(|c| Value::Int(secs(c.seq()))),
        ),
    ];
    let mut sql = String::from(
        "SELECT seq, at, action, account, agent, resource, scope, request, detail FROM audit",
    );
    let mut values = Vec::new();
    for (clause, value) in filters {
        let Some(value) = value else { continue };
        values.push(value);
        sql.push_str(if values.len() == 1 {
            " WHERE "
        } else {
            " AND "
        });
        sql.push_str(&clause.replace('?', &format!("{mark}{}", values.len())));
    }
    values.push(Value::Int(
        i64::try_from(q.fetch_limit()).unwrap_or(i64::MAX),
    ));
    sql.push_str(if q.oldest_first {
        " ORDER BY seq ASC"
    } else {
        " ORDER BY seq DESC"
    });
    sql.push_str(&format!(" LIMIT {mark}{}", values.len()));
    (sql, values)
}
