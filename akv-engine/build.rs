//! Marks the engine library "nodelete": OpenSSL dlclose()s dynamic engines when their last
//! ENGINE is freed, but a Rust library cannot be unmapped safely (thread-local destructors
//! and statics of the Rust runtime would dangle), and a library that stays mapped is reused
//! by the next load instead of leaking a fresh copy of its statics each time.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
