//! `sqlx::migrate!` embeds migrations/ at compile time: rebuild when a migration is added or
//! changed, or a new one would silently not be applied.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
