//! Compile-time checks of the macros (trybuild): every supported form compiles, every misuse is
//! an error at the user's own tokens. Regenerate `.stderr` files with `TRYBUILD=overwrite`.

/// One `TestCases` for both kinds, so that trybuild builds the dependencies once (two would
/// build them twice, side by side, doubling the disk and time this test takes).
#[test]
fn macros_accept_every_supported_form_and_reject_misuse_at_the_users_span() {
    let cases = trybuild::TestCases::new();
    cases.pass("pass/*.rs");
    cases.compile_fail("fail/*.rs");
}
