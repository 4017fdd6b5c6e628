//! The test macros (after ripgrep's `tests/macros.rs`).

/// A test that needs root: ignored unless asked for (`--run-ignored all`, as
/// `scripts/test` and CI do), and then failing at once without root rather than passing
/// by doing nothing. Doc comments and attributes before `fn` are kept.
///
/// ```ignore
/// lab_test! {
///     /// What it checks.
///     fn nginx_v4_open() { let lab = Lab::new("v4"); … }
/// }
/// ```
macro_rules! lab_test {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        $(#[$attr])*
        #[test]
        #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
        fn $name() {
            $crate::lab::require_root();
            $body
        }
    };
}
