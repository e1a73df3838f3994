//! The conformance suite on PostgreSQL: a fresh database per test.

leasehold_testkit::conformance_tests!(leasehold_testkit::pg::PgBackend::new());
