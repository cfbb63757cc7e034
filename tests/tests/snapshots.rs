//! Generated source is deterministic and reviewed like code: one snapshot per representative
//! config × problem class × target. `tessera emit` prints exactly these (cli/tests/emit.rs).

use tessera_dsl::Target;
use tessera_tests::{config_for, gemm, variants, REPRESENTATIVE};

#[test]
fn gemm_sources_match_snapshots() {
    let mut taken = 0;
    for target in [Target::Sm80, Target::Sm90a, Target::Gfx90a] {
        for (label, problem) in variants() {
            for values in REPRESENTATIVE {
                let Some(config) = config_for(&values, &problem, target) else {
                    continue;
                };
                let src = tessera_codegen::generate(gemm(), &config, target).expect("codegen");
                let again = tessera_codegen::generate(gemm(), &config, target).expect("codegen");
                assert_eq!(src.source, again.source, "generation is not deterministic");
                insta::assert_snapshot!(
                    format!("{}__{}__{}", config.kernel_name(), target, label),
                    src.source
                );
                taken += 1;
            }
        }
    }
    assert!(taken >= 18, "only {taken} snapshots");
}

#[test]
fn fused_sources_match_snapshots() {
    let mut taken = 0;
    for target in [Target::Sm80, Target::Sm90a, Target::Gfx90a] {
        for (t, config, label) in tessera_tests::fused_configs(target) {
            let src = tessera_codegen::generate(t, &config, target).expect("codegen");
            let again = tessera_codegen::generate(t, &config, target).expect("codegen");
            assert_eq!(src.source, again.source, "generation is not deterministic");
            insta::assert_snapshot!(
                format!("{}__{}__{}", config.kernel_name(), target, label),
                src.source
            );
            taken += 1;
        }
    }
    assert!(taken >= 36, "only {taken} snapshots");
}
