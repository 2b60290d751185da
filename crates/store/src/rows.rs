//! Multi-row statements for both backends: sqlx hands each SQLite statement to a worker
//! thread, so writes of many rows are few statements with many value rows.

use crate::Backend;

/// `($k, $k+1, …)` groups for `rows` rows of `width` values, numbered from 1; the
/// columns listed in `bigint` (0-based) are cast so PostgreSQL types them without a
/// table to infer from. SQLite gets anonymous `?` placeholders: sqlx looks each numbered
/// one up by name, a linear search in SQLite, which makes thousands of them quadratic.
pub(crate) fn value_rows(backend: Backend, rows: usize, width: usize, bigint: &[usize]) -> String {
    let mut sql = String::new();
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..width {
            if col > 0 {
                sql.push_str(", ");
            }
            let n = row * width + col + 1;
            let placeholder = match backend {
                Backend::Sqlite => "?".to_owned(),
                Backend::Postgres => format!("${n}"),
            };
            if bigint.contains(&col) {
                sql.push_str(&format!("CAST({placeholder} AS BIGINT)"));
            } else {
                sql.push_str(&placeholder);
            }
        }
        sql.push(')');
    }
    sql
}

/// `count` placeholders for values `from`, `from + 1`, … (1-based), comma-separated: `$n`
/// on PostgreSQL, anonymous `?` on SQLite — whose values are then bound in the order the
/// placeholders appear in the statement, so callers write them in bind order.
pub(crate) fn placeholders(backend: Backend, from: usize, count: usize) -> String {
    let mut sql = String::with_capacity(count * 4);
    for n in from..from + count {
        if n > from {
            sql.push_str(", ");
        }
        match backend {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => sql.push_str(&format!("${n}")),
        }
    }
    sql
}
