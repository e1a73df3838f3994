//! The conformance suite on SQLite: a fresh database file per test.

leasehold_testkit::conformance_tests!(leasehold_testkit::sqlite::SqliteBackend::new());
