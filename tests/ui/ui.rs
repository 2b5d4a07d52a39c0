//! Compile-time checks of the macros (trybuild): every misuse is an error at the user's own
//! tokens. Regenerate `.stderr` files with `TRYBUILD=overwrite`. Every supported form compiles:
//! the `pass/` cases are test targets of their own (see Cargo.toml), so that trybuild only checks
//! (a pass case would make it build every dependency, code generation included).

#[test]
fn macros_reject_misuse_at_the_users_span() {
    trybuild::TestCases::new().compile_fail("fail/*.rs");
}
