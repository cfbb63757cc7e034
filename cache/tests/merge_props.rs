//! Property tests of `merge` on real files: commutative, idempotent, never loses a key that
//! has results, keeps per candidate exactly what the policy keeps, and refuses winners with
//! no verified result behind them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use tessera_cache::{
    merge, policy, Cache, DeviceFingerprint, Explanation, RefusalKind, ResultRow, Status,
    Timestamp, Timing, WinnerKey, WinnerRow,
};

#[derive(Debug, Clone)]
struct Spec {
    results: Vec<ResultRow>,
    /// Winners recorded with no results behind them (e.g. a winners-only cache): merge
    /// refuses them, since nothing shows they passed verification.
    bare_winners: Vec<WinnerRow>,
}

fn device(i: usize) -> DeviceFingerprint {
    if i == 0 {
        common::h100()
    } else {
        common::sim()
    }
}

fn arb_row() -> impl Strategy<Value = ResultRow> {
    (
        0usize..2,
        prop::sample::select(vec![384u32, 2048]),
        0usize..3,
        prop::option::weighted(
            0.8,
            (
                1u32..3,
                prop::sample::select(vec![1.0, 1.003, 1.2]),
                0u32..2,
            ),
        ),
        prop::sample::select(vec!["host-a", "host-b"]),
        0i64..2,
        any::<bool>(),
    )
        .prop_map(|(dev, m, k, timing, host, day, alt_json)| {
            let mut r = common::result(&device(dev), m, &format!("k{k}"), 1.0, 1);
            match timing {
                Some((samples, median, spread)) => {
                    r.timing = Some(Timing {
                        median_ms: median,
                        p10_ms: median - 0.01 * f64::from(spread),
                        p90_ms: median + 0.01 * f64::from(spread),
                        samples,
                    });
                }
                None => {
                    r.status = Status::Timeout;
                    r.reason = "over budget".into();
                    r.timing = None;
                }
            }
            r.provenance.origin_host = host.into();
            r.provenance.measured_at =
                Timestamp::from_unix(1_750_000_000 + day * 86_400, 0).unwrap();
            if alt_json {
                r.problem.json = format!(r#"{{"m":{m},"note":"alt"}}"#);
            }
            r
        })
}

fn arb_bare_winner() -> impl Strategy<Value = WinnerRow> {
    (
        0usize..2,
        prop::sample::select(vec![2048u32, 4096]),
        0usize..3,
        prop::sample::select(vec![1.0, 1.002, 2.0]),
    )
        .prop_map(|(dev, m, k, median)| {
            WinnerRow::from_result(&common::result(
                &device(dev),
                m,
                &format!("w{k}"),
                median,
                5,
            ))
            .unwrap()
        })
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(arb_row(), 0..10),
        prop::collection::vec(arb_bare_winner(), 0..3),
    )
        .prop_map(|(results, bare_winners)| Spec {
            results,
            bare_winners,
        })
}

// Small domains on purpose: the same candidate often appears in both inputs, with ties on
// samples, noise and date, so every tie-break of the policy is exercised.

/// Writes a cache whose winners follow the policy (as a tuner's would).
fn write(path: &Path, spec: &Spec) {
    let c = common::build(path, &spec.results);
    let with_results: Vec<WinnerKey> = spec.results.iter().map(|r| r.winner_key()).collect();
    for w in &spec.bare_winners {
        if !with_results.contains(&w.key()) {
            // Several bare winners of one key: keep the policy's choice among them.
            let same: Vec<_> = spec
                .bare_winners
                .iter()
                .filter(|x| x.key() == w.key())
                .cloned()
                .collect();
            c.record_winner(policy::choose_winner_row(&same).unwrap())
                .unwrap();
        }
    }
}

fn dump(path: &Path) -> Vec<Explanation> {
    Cache::open(path).unwrap().why("").unwrap()
}

type Pk = (WinnerKey, String);

fn results_by_pk(d: &[Explanation]) -> BTreeMap<Pk, ResultRow> {
    d.iter()
        .flat_map(|e| e.candidates.iter())
        .map(|r| ((r.winner_key(), r.kernel_name.clone()), r.clone()))
        .collect()
}

/// The keys that have results (what a merge keeps; bare winners are refused).
fn with_results(d: &[Explanation]) -> Vec<Explanation> {
    d.iter()
        .filter(|e| !e.candidates.is_empty())
        .cloned()
        .collect()
}

fn winner_keys(d: &[Explanation]) -> Vec<WinnerKey> {
    d.iter()
        .filter(|e| e.winner.is_some())
        .map(|e| e.key.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn merge_is_commutative_idempotent_and_lossless(a in arb_spec(), b in arb_spec()) {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        write(&p("a.db"), &a);
        write(&p("b.db"), &b);
        let s = merge(&p("a.db"), &p("b.db"), &p("ab.db"), None).unwrap();
        merge(&p("b.db"), &p("a.db"), &p("ba.db"), None).unwrap();
        merge(&p("a.db"), &p("a.db"), &p("aa.db"), None).unwrap();
        let (da, db, dab) = (dump(&p("a.db")), dump(&p("b.db")), dump(&p("ab.db")));

        // Only bare winners are refused, each as unverified.
        for side in [&s.from_a, &s.from_b] {
            for k in &side.skipped.rows {
                prop_assert_eq!(k.table, "winners");
                prop_assert_eq!(k.reason.kind, RefusalKind::Unverified);
            }
        }
        prop_assert!(dab.iter().all(|e| !e.candidates.is_empty()), "a winner with no results");
        // Commutative: the same rows, winners and problem descriptions either way round.
        prop_assert_eq!(&dab, &dump(&p("ba.db")));
        // Idempotent: merging a cache with itself gives that cache (less its bare winners).
        prop_assert_eq!(&dump(&p("aa.db")), &with_results(&da));

        // Lossless: every candidate and every winner key of either input is in the merge, and
        // each candidate is the one the policy keeps.
        let (ra, rb, rab) = (results_by_pk(&da), results_by_pk(&db), results_by_pk(&dab));
        prop_assert_eq!(rab.len(), ra.keys().chain(rb.keys()).collect::<std::collections::BTreeSet<_>>().len());
        for (pk, merged) in &rab {
            let kept = match (ra.get(pk), rb.get(pk)) {
                (Some(x), Some(y)) => policy::keep(x, y).clone(),
                (Some(x), None) | (None, Some(x)) => x.clone(),
                (None, None) => return Err(TestCaseError::fail("a row from nowhere")),
            };
            // The problem description is per problem key, chosen separately.
            let mut merged = merged.clone();
            merged.problem = kept.problem.clone();
            prop_assert_eq!(&merged, &kept);
        }
        let wab = winner_keys(&dab);
        for k in winner_keys(&with_results(&da)).into_iter().chain(winner_keys(&with_results(&db))) {
            prop_assert!(wab.contains(&k), "winner of {} lost", k);
        }
        // Every merged winner is the policy's choice among the merged candidates.
        for e in &dab {
            if let Some(best) = e.policy_choice() {
                prop_assert_eq!(&e.winner, &WinnerRow::from_result(best));
            }
        }
    }
}
