//! The claim statement as sent (`sql/task_claim.sql`): its queues and limit written into the text, and
//! the size class of the tasks table it is planned for (see `size.rs`).

use std::sync::{Arc, LazyLock};

use leasehold_core::statements::KeptStatements;

use crate::size;

/// `task_claim.sql` for these queues and this limit, both written into the text as literals (see the
/// statement's comment), planned for a table of size class `class`. Each queue name is quoted as a
/// string constant (`E'...'`, its quotes and backslashes escaped), so no name can end the literal. The
/// comment lines are left out first, so that only the statement's own placeholders are filled (a name
/// holding a line break cannot end a comment).
///
/// Written once per class, limit and set of queues in the process, not on every claim (the text is
/// about 3 kB): a worker has one set of queues, claims in about a dozen sizes, and its table stays in a
/// class or two (see [`KeptStatements`]).
pub(crate) fn claim_sql(queues: &[String], limit: u32, class: u8) -> Arc<str> {
    static WRITTEN: LazyLock<KeptStatements<(u8, u32)>> = LazyLock::new(KeptStatements::new);
    WRITTEN.get_or_write((class, limit), queues, || write(queues, limit, class))
}

/// The text itself, as [`claim_sql`] describes it.
fn write(queues: &[String], limit: u32, class: u8) -> String {
    static STATEMENT: LazyLock<String> = LazyLock::new(|| {
        include_str!("sql/task_claim.sql")
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .flat_map(|line| [line, "\n"])
            .collect()
    });
    let literals: Vec<String> =
        queues.iter().map(|q| format!("E'{}'", q.replace('\\', "\\\\").replace('\'', "''"))).collect();
    // the limit first: a queue's name may hold the text "{limit}" itself
    let mut sql = STATEMENT
        .replace("{limit}", &limit.to_string())
        .replace("{queues}", &format!("ARRAY[{}]::text[]", literals.join(", ")));
    size::mark(&mut sql, class);
    sql
}

#[cfg(test)]
mod tests {
    use super::claim_sql;

    #[test]
    fn each_class_is_another_statement_and_names_are_written_as_given() {
        let queues = ["size class 3 */".to_owned(), "it's {limit}".to_owned()];
        let small = claim_sql(&queues, 64, 1);
        let large = claim_sql(&queues, 64, 5);
        assert_ne!(small, large);
        assert!(large.ends_with("/* planned for a tasks table of size class 5 */"), "{large}");
        assert!(large.contains(r"ARRAY[E'size class 3 */', E'it''s {limit}']::text[]"), "{large}");
        assert!(large.contains("LIMIT 64") && !large.contains("--"), "comments are left out:\n{large}");
        assert!(std::sync::Arc::ptr_eq(&large, &claim_sql(&queues, 64, 5)), "written once");
    }
}
