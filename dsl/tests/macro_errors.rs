//! Compile-fail tests for `#[gpu_template]`'s diagnostics: each file under
//! `tests/compile_fail/` must fail with exactly its `.stderr` (regenerate with
//! `TRYBUILD=overwrite cargo test -p tessera-dsl --test macro_errors`, then read the diff).

#[test]
fn macro_errors() {
    trybuild::TestCases::new().compile_fail("tests/compile_fail/*.rs");
}
