//! Marks the provider module "nodelete": OpenSSL dlclose()s a provider when it is unloaded,
//! but a Rust library cannot be unmapped safely (thread-local destructors, the fork handler
//! and statics of the Rust runtime would dangle), and a module that stays mapped is reused
//! by the next load instead of leaking a fresh copy of its statics each time.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
