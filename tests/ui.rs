//! Compile-time checks of the macros (trybuild): every supported form compiles, every misuse is
//! an error at the user's own tokens. Regenerate `.stderr` files with `TRYBUILD=overwrite`.

#[test]
fn macros_accept_every_supported_form() {
    trybuild::TestCases::new().pass("ui/pass/*.rs");
}

#[test]
fn macro_misuse_is_a_compile_error_at_the_users_span() {
    trybuild::TestCases::new().compile_fail("ui/fail/*.rs");
}
