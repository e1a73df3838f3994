//! The size class of the tasks table, written into the statements whose plans depend on the table's
//! size: the claim, and the renewal's look for leases it could not renew.
//!
//! PostgreSQL plans a prepared statement for the table's size when it plans it, and after five runs on
//! a connection it keeps one generic plan until the table's statistics change (an ANALYZE or a VACUUM).
//! A queue drained and vacuumed empty (autovacuum does so once its dead rows add up) leaves a table
//! PostgreSQL knows to be empty, so an idle worker's claims settle on a plan for an empty table:
//! sequential scans, a sort, a hash join. That plan stays when a burst of tasks arrives, until autovacuum
//! next analyzes the table, up to its naptime later (a minute by default), and every claim meanwhile
//! reads the whole table three times: a claim of 512 among 200,000 tasks took 328 ms so, against about
//! 6 ms by index. A renewal that found a lease it could not renew read the whole table once the same way.
//!
//! So every claim answers the table's size on disk, the store keeps its class ([`SizeClass`]), and these
//! statements carry the class in a comment at their end ([`mark`]). Once the table grew or shrank past a
//! class, they are other prepared statements, which PostgreSQL plans for the table as it is then. Only
//! the first claim of each store (of each process) after a burst still runs on the plan made before it.
//! Each class visited adds its own prepared statements on each connection (sqlx keeps 100 a connection
//! and re-prepares one it evicted); a table mostly stays within a class or two.

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

/// From 16,384 pages on (128 MiB of 8 kB pages, about a million tasks) every plan reads by index, and
/// the class stops growing, so that a large table keeps its plans.
pub(crate) const TOP_CLASS: u8 = 8;

/// The class of a table of `pages` pages: 0 when empty, then one more for every fourfold growth (1 to
/// 3 pages, 4 to 15, 16 to 63, ...), up to [`TOP_CLASS`]. A plan made for a table of some class was
/// made for a table at most four times smaller than any of the same class.
pub(crate) fn class_of(pages: i64) -> u8 {
    match u64::try_from(pages) {
        Ok(0) | Err(_) => 0,
        Ok(p) => (p.ilog2() / 2 + 1).min(u32::from(TOP_CLASS)) as u8,
    }
}

/// Writes `class` into the statement `sql` as a comment at its end: to PostgreSQL, each class is
/// another statement, with plans of its own.
pub(crate) fn mark(sql: &mut String, class: u8) {
    sql.push_str("\n/* planned for a tasks table of size class ");
    sql.push_str(&class.min(TOP_CLASS).to_string());
    sql.push_str(" */");
}

/// The texts of one fixed statement, one per class, written once.
pub(crate) struct PerClass([String; TOP_CLASS as usize + 1]);

impl PerClass {
    pub(crate) fn new(sql: &str) -> Self {
        Self(std::array::from_fn(|class| {
            let mut text = sql.to_owned();
            mark(&mut text, class as u8);
            text
        }))
    }

    pub(crate) fn get(&self, class: u8) -> &str {
        &self.0[usize::from(class.min(TOP_CLASS))]
    }
}

#[cfg(test)]
mod tests {
    use super::{PerClass, TOP_CLASS, class_of};

    #[test]
    fn classes_grow_by_a_factor_of_four_in_pages_and_stop_at_the_top() {
        let pages = [0, 1, 3, 4, 15, 16, 63, 64, 255, 256, 16_383, 16_384, 1 << 40, -1];
        assert_eq!(pages.map(class_of).to_vec(), vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 8, 0]);
        assert_eq!(class_of(i64::MAX), TOP_CLASS);
    }

    #[test]
    fn each_class_is_another_statement_after_a_line_comment_too() {
        let texts = PerClass::new("SELECT 1 -- the last line ends in a comment");
        assert_ne!(texts.get(0), texts.get(1));
        assert_eq!(texts.get(TOP_CLASS + 1), texts.get(TOP_CLASS));
        assert_eq!(
            texts.get(3),
            "SELECT 1 -- the last line ends in a comment\n/* planned for a tasks table of size class 3 */"
        );
    }
}
