//! The claim statement as sent (`sql/task_claim.sql`): its queues and limit written into the text, and
//! the size class of the tasks table it is planned for.
//!
//! PostgreSQL plans a prepared statement for the table's size when it plans it, and after five runs on
//! a connection it keeps one generic plan until the table's statistics change (an ANALYZE or a VACUUM).
//! A queue drained and vacuumed empty (autovacuum does so once its dead rows add up) leaves a table
//! PostgreSQL knows to be empty, so the claims of an idle worker settle on a plan for an empty table:
//! sequential scans, a sort, a hash join. That plan stays when a burst of tasks arrives, until autovacuum
//! next analyzes the table, up to its naptime later (a minute by default), and every claim meanwhile
//! reads the whole table three times: a claim of 512 among 200,000 tasks took 328 ms so, against about
//! 6 ms by index.
//!
//! So every claim answers the table's size on disk, and the store writes the size's class (about a
//! power of four in pages, see [`class_of`]) into the statement's text. Once the table grew or shrank
//! past a class, the next claim is another prepared statement, which PostgreSQL plans for the table as
//! it is then. Only the first claim after a burst still runs on the plan made before it.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// The size class of the tasks table that the store's latest claim saw, shared by the store's clones.
#[derive(Debug, Default)]
pub(crate) struct SizeClass(AtomicU8);

impl SizeClass {
    pub(crate) fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    /// A claim saw the table at `pages` pages.
    pub(crate) fn saw(&self, pages: i64) {
        self.0.store(class_of(pages), Ordering::Relaxed);
    }
}

/// The class of a table of `pages` pages: 0 when empty, then one more for every fourfold growth (1 to
/// 3 pages, 4 to 15, 16 to 63, ...), up to [`TOP_CLASS`]. A plan made for a table of some class is
/// made for a table at most four times smaller than any of the same class.
pub(crate) fn class_of(pages: i64) -> u8 {
    match u64::try_from(pages) {
        Ok(0) | Err(_) => 0,
        Ok(p) => (p.ilog2() / 2 + 1).min(u32::from(TOP_CLASS)) as u8,
    }
}

/// From 16,384 pages on (128 MiB of 8 kB pages, about a million tasks) every plan reads by index, and
/// the class stops growing, so that a large table keeps its plans.
pub(crate) const TOP_CLASS: u8 = 8;

/// `task_claim.sql` for these queues and this limit, both written into the text as literals (see the
/// statement's comment), planned for a table of size class `class`. Each queue name is quoted as a
/// string constant (`E'...'`, its quotes and backslashes escaped), so no name can end the literal. The
/// comment lines are left out first, so that only the statement's own placeholders are filled (a name
/// holding a line break cannot end a comment).
pub(crate) fn claim_sql(queues: &[String], limit: u32, class: u8) -> String {
    static STATEMENT: LazyLock<String> = LazyLock::new(|| {
        include_str!("sql/task_claim.sql")
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .flat_map(|line| [line, "\n"])
            .collect()
    });
    let literals: Vec<String> =
        queues.iter().map(|q| format!("E'{}'", q.replace('\\', "\\\\").replace('\'', "''"))).collect();
    // the numbers first: a queue's name may hold the text "{limit}" or "{size_class}" itself
    STATEMENT
        .replace("{limit}", &limit.to_string())
        .replace("{size_class}", &class.to_string())
        .replace("{queues}", &format!("ARRAY[{}]::text[]", literals.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::{TOP_CLASS, claim_sql, class_of};

    #[test]
    fn classes_grow_by_a_factor_of_four_in_pages_and_stop_at_the_top() {
        let classes: Vec<u8> =
            [0, 1, 3, 4, 15, 16, 63, 64, 255, 256, 16_383, 16_384, 1 << 40, -1].map(class_of).to_vec();
        assert_eq!(classes, vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 8, 0]);
        assert_eq!(class_of(i64::MAX), TOP_CLASS);
    }

    #[test]
    fn each_class_is_another_statement_and_names_are_written_as_given() {
        let queues = ["{size_class}".to_owned(), "it's {limit}".to_owned()];
        let small = claim_sql(&queues, 64, 1);
        let large = claim_sql(&queues, 64, 5);
        assert_ne!(small, large);
        assert!(small.contains("size class 1 */") && large.contains("size class 5 */"), "{large}");
        assert!(large.contains(r"ARRAY[E'{size_class}', E'it''s {limit}']::text[]"), "{large}");
        assert!(!large.contains("--"), "comments are left out:\n{large}");
    }
}
