//! The bytes an sm_90a GEMM's producer announces on a stage's `full` barrier are exactly the
//! bytes its TMA boxes bring: A's and B's tile at full M (B's whole tile also where each block
//! of a multicast cluster copies half), never a stored output's. A count off
//! by one box leaves the barrier's transaction count short or over, and the kernel hangs on the
//! GPU; here it is a host-side check of the generated source over every point of the space and
//! every problem class (no compiler needed).

use tessera_dsl::{Problem, Target};
use tessera_tests::{config_for, gemm, variants};

/// The value of the emitted `tx_bytes` expression at an M of at least the tile: terms joined by
/// ` + `, each a constant `Nu`, A's capped lines `min(Lu, ((unsigned)M + 7u) & ~7u) * Bu`, or
/// (B multicast) `tx_b`, B's whole stage, itself a constant declared before it.
/// `None` where the kernel has no TMA producer (an sm_80-pipeline config on sm_90a).
fn tx_bytes_at_full_m(source: &str) -> Option<u64> {
    let declared = |name: &str| {
        source.lines().find_map(|l| {
            l.trim()
                .strip_prefix(&format!("const unsigned {name} = "))
                .and_then(|rest| rest.split(';').next())
        })
    };
    let expr = declared("tx_bytes")?;
    let constant = |s: &str| -> u64 {
        let s = match s.trim() {
            "tx_b" => declared("tx_b").expect("tx_b is declared"),
            s => s,
        };
        s.trim()
            .strip_suffix('u')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a constant: {s:?} in {expr}"))
    };
    expr.replace("((unsigned)M + 7u) & ~7u", "M8")
        .split(" + ")
        .map(|term| match term.strip_prefix("min(") {
            Some(capped) => {
                let (lines, bytes) = capped.split_once(", M8) * ").expect("A's capped lines");
                constant(lines) * constant(bytes)
            }
            None => constant(term),
        })
        .sum::<u64>()
        .into()
}

#[test]
fn sm90a_gemm_stages_announce_exactly_their_tma_bytes() {
    let t = gemm();
    let space = t.space();
    let points: Vec<Vec<i64>> = space
        .enumerate()
        .into_iter()
        .filter(|v| !space.foreign_knob(v, Target::Sm90a))
        .collect();
    let (mut checked, mut tma_stored, mut multicast) = (0, 0, 0);
    for (label, problem) in variants() {
        let Problem::Gemm(g) = &problem else {
            unreachable!("variants are GEMMs")
        };
        let elem = u64::from(g.input.size_bytes());
        for v in &points {
            let Some(config) = config_for(v, &problem, Target::Sm90a) else {
                continue;
            };
            let knob = |name: &str| config.get(name).and_then(|x| u64::try_from(x).ok());
            let (Some(tm), Some(tn), Some(tk)) = (knob("tile_m"), knob("tile_n"), knob("tile_k"))
            else {
                panic!("{config} lacks a tile knob");
            };
            let src = tessera_codegen::generate(t, &config, Target::Sm90a).expect("codegen");
            let Some(announced) = tx_bytes_at_full_m(&src.source) else {
                continue;
            };
            assert_eq!(announced, (tm + tn) * tk * elem, "{label}: {config}");
            checked += 1;
            tma_stored += usize::from(src.source.contains("tmap_d"));
            multicast += usize::from(knob("multicast") == Some(2));
        }
    }
    assert!(checked >= 100, "only {checked} configs checked");
    // the stored output's map must be among them: it is the map a count could wrongly include
    assert!(
        tma_stored >= 10,
        "only {tma_stored} TMA-stored configs checked"
    );
    // and multicast ones, whose B stage arrives half from the cluster's other block
    assert!(
        multicast >= 10,
        "only {multicast} multicast configs checked"
    );
}
