// `sqlx::migrate!` embeds the files of migrations/ at compile time; a file added there must rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
