//! The migrations are embedded by `sqlx::migrate!`, which makes the compiler watch the files it found but
//! not the folder: without this, a migration added to it would be left out of the next build.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
