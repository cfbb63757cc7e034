//! Which measurement is kept, and which kernel wins: the merge policy.
//!
//! Owns the two choices every import, merge and tuner run must make the same way:
//!
//! * [`support_order`] / [`keep`]: two measurements of the same candidate (same device,
//!   template version, problem and kernel) — keep the better-supported one: more samples;
//!   then lower noise `(p90 - p10) / median`; then the newer `measured_at`; then the smaller
//!   origin host name; then a fixed comparison of every remaining field. This is a total
//!   order, so keeping is commutative, associative and idempotent: the order caches are
//!   merged in never matters.
//! * [`choose_winner`]: the fastest eligible (`ok`, timed) result wins; results within
//!   [`NEAR_TIE`] of the fastest median are near-ties, broken by the smallest kernel name
//!   (contract 5), so a re-run with slightly different noise picks the same kernel.
//!
//! Pure functions over [`crate::record`] types; no SQL, no I/O.

use std::cmp::Ordering;

use crate::record::{ResultRow, WinnerRow};

/// Relative distance from the fastest median within which results count as tied (0.5 %).
pub const NEAR_TIE: f64 = 0.005;

fn samples(r: &ResultRow) -> u32 {
    r.timing.map_or(0, |t| t.samples)
}

fn noise(r: &ResultRow) -> f64 {
    r.timing.map_or(f64::INFINITY, |t| t.noise())
}

/// How two measurements of one candidate compare by support: `Greater` means `a` is the
/// better supported and is kept. `Equal` only for rows equal in every field.
pub fn support_order(a: &ResultRow, b: &ResultRow) -> Ordering {
    samples(a)
        .cmp(&samples(b))
        .then_with(|| noise(b).total_cmp(&noise(a)))
        .then_with(|| a.provenance.measured_at.cmp(&b.provenance.measured_at))
        .then_with(|| b.provenance.origin_host.cmp(&a.provenance.origin_host))
        .then_with(|| canonical_cmp(b, a))
}

/// The better-supported of two measurements of one candidate (see [`support_order`]).
pub fn keep<'a>(a: &'a ResultRow, b: &'a ResultRow) -> &'a ResultRow {
    if support_order(a, b) == Ordering::Less {
        b
    } else {
        a
    }
}

/// The winner among the results of one key: the fastest eligible result, near-ties (within
/// [`NEAR_TIE`] of the fastest) going to the smallest kernel name. `None` if nothing is
/// eligible. The answer does not depend on the order of `rows`.
pub fn choose_winner(rows: &[ResultRow]) -> Option<&ResultRow> {
    let eligible: Vec<(&ResultRow, f64)> = rows
        .iter()
        .filter_map(|r| {
            r.timing
                .filter(|_| r.is_eligible())
                .map(|t| (r, t.median_ms))
        })
        .collect();
    let fastest = eligible.iter().map(|&(_, m)| m).min_by(f64::total_cmp)?;
    let limit = fastest * (1.0 + NEAR_TIE);
    eligible
        .into_iter()
        .filter(|&(_, m)| m <= limit)
        .min_by(|(a, _), (b, _)| {
            a.kernel_name
                .cmp(&b.kernel_name)
                .then_with(|| support_order(b, a))
        })
        .map(|(r, _)| r)
}

/// The winner among winner rows of one key that have no results behind them (e.g. a
/// cache holding winners only): the same near-tie rule on `median_ms`, then kernel name,
/// then newer, then a fixed comparison of every field.
pub fn choose_winner_row(rows: &[WinnerRow]) -> Option<&WinnerRow> {
    let fastest = rows.iter().map(|w| w.median_ms).min_by(f64::total_cmp)?;
    let limit = fastest * (1.0 + NEAR_TIE);
    rows.iter().filter(|w| w.median_ms <= limit).min_by(|a, b| {
        a.kernel_name
            .cmp(&b.kernel_name)
            .then_with(|| b.provenance.measured_at.cmp(&a.provenance.measured_at))
            .then_with(|| a.provenance.origin_host.cmp(&b.provenance.origin_host))
            .then_with(|| a.median_ms.total_cmp(&b.median_ms))
            .then_with(|| a.provenance.tool_version.cmp(&b.provenance.tool_version))
            .then_with(|| a.config.cmp(&b.config))
            .then_with(|| a.config_json.cmp(&b.config_json))
            .then_with(|| a.guards_json.cmp(&b.guards_json))
            .then_with(|| a.problem.cmp(&b.problem))
            .then_with(|| a.device.cmp(&b.device))
            .then_with(|| a.template.cmp(&b.template))
    })
}

fn cmp_f64_opt(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

/// A fixed order over every field, the last tie-break that makes [`support_order`] total.
fn canonical_cmp(a: &ResultRow, b: &ResultRow) -> Ordering {
    let t = |r: &ResultRow| r.timing.map(|t| (t.median_ms, t.p10_ms, t.p90_ms));
    a.status
        .cmp(&b.status)
        .then_with(|| cmp_f64_opt(t(a).map(|x| x.0), t(b).map(|x| x.0)))
        .then_with(|| cmp_f64_opt(t(a).map(|x| x.1), t(b).map(|x| x.1)))
        .then_with(|| cmp_f64_opt(t(a).map(|x| x.2), t(b).map(|x| x.2)))
        .then_with(|| cmp_f64_opt(a.throughput.map(|x| x.value), b.throughput.map(|x| x.value)))
        .then_with(|| {
            a.throughput
                .map(|x| x.unit)
                .cmp(&b.throughput.map(|x| x.unit))
        })
        .then_with(|| cmp_f64_opt(a.max_rel_error, b.max_rel_error))
        .then_with(|| cmp_f64_opt(a.compile_s, b.compile_s))
        .then_with(|| a.reason.cmp(&b.reason))
        .then_with(|| a.config.cmp(&b.config))
        .then_with(|| a.config_json.cmp(&b.config_json))
        .then_with(|| a.guards_json.cmp(&b.guards_json))
        .then_with(|| a.provenance.tool_version.cmp(&b.provenance.tool_version))
        .then_with(|| a.kernel_name.cmp(&b.kernel_name))
        .then_with(|| a.problem.cmp(&b.problem))
        .then_with(|| a.device.cmp(&b.device))
        .then_with(|| a.template.cmp(&b.template))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::tests::ok_row;
    use crate::record::{Status, Timing};
    use crate::timestamp::Timestamp;
    use proptest::prelude::*;

    /// Rows of one candidate drawn from small domains, so ties on every criterion happen.
    pub(crate) fn arb_measurement() -> impl Strategy<Value = ResultRow> {
        (
            prop::option::of((1u32..4, 1u32..4, 1u32..3)),
            0i64..3,
            prop::sample::select(vec!["host-a", "host-b"]),
            prop::sample::select(vec![Status::Ok, Status::Timeout]),
            prop::sample::select(vec!["BM=64", "BM=128"]),
        )
            .prop_map(|(timing, day, host, status, config)| {
                let mut r = ok_row("k", 1.0);
                r.timing = timing.map(|(samples, med, spread)| {
                    let m = f64::from(med);
                    Timing {
                        median_ms: m,
                        p10_ms: m - 0.1 * f64::from(spread),
                        p90_ms: m + 0.1 * f64::from(spread),
                        samples,
                    }
                });
                r.status = if r.timing.is_none() {
                    Status::Timeout
                } else {
                    status
                };
                r.reason = if r.status == Status::Ok {
                    String::new()
                } else {
                    "slow".into()
                };
                r.provenance.origin_host = host.into();
                r.provenance.measured_at =
                    Timestamp::from_unix(1_750_000_000 + day * 86_400, 0).unwrap();
                r.config = config.into();
                r
            })
    }

    fn arb_results_of_one_key() -> impl Strategy<Value = Vec<ResultRow>> {
        prop::collection::vec(
            (
                0usize..5,
                prop::sample::select(vec![1.0, 1.002, 1.004, 1.006, 1.5]),
                any::<bool>(),
            ),
            0..8,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(k, m, ok)| {
                    let mut r = ok_row(&format!("k{k}"), m);
                    if !ok {
                        r.status = Status::WrongResult;
                        r.reason = "mismatch".into();
                    }
                    r
                })
                .collect()
        })
    }

    #[test]
    fn more_samples_beat_lower_noise_beat_newer_beat_host() {
        let base = ok_row("k", 1.0);
        let mut more = base.clone();
        more.timing.as_mut().unwrap().samples = 200;
        more.timing.as_mut().unwrap().p90_ms = 5.0;
        assert_eq!(keep(&base, &more), &more);

        let mut quieter = base.clone();
        quieter.timing.as_mut().unwrap().p90_ms = 1.001;
        quieter.provenance.measured_at = Timestamp::from_unix(0, 0).unwrap();
        assert_eq!(keep(&base, &quieter), &quieter);

        let mut newer = base.clone();
        newer.provenance.measured_at = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        newer.provenance.origin_host = "zzz".into();
        assert_eq!(keep(&newer, &base), &newer);

        let mut other_host = base.clone();
        other_host.provenance.origin_host = "aaa".into();
        assert_eq!(keep(&base, &other_host), &other_host);
    }

    #[test]
    fn measured_rows_beat_unmeasured_ones() {
        let ok = ok_row("k", 1.0);
        let mut timeout = ok.clone();
        timeout.status = Status::Timeout;
        timeout.timing = None;
        timeout.provenance.measured_at = Timestamp::parse("2030-01-01T00:00:00Z").unwrap();
        assert_eq!(keep(&timeout, &ok), &ok);
    }

    #[test]
    fn near_ties_go_to_the_smallest_kernel_name() {
        let rows = vec![ok_row("k_b", 1.0), ok_row("k_a", 1.004), ok_row("k_0", 1.2)];
        assert_eq!(choose_winner(&rows).unwrap().kernel_name, "k_a");
        let rows = vec![ok_row("k_b", 1.0), ok_row("k_a", 1.006)];
        assert_eq!(choose_winner(&rows).unwrap().kernel_name, "k_b");
    }

    #[test]
    fn only_ok_rows_win() {
        let mut wrong = ok_row("fast_but_wrong", 0.1);
        wrong.status = Status::WrongResult;
        wrong.reason = "max rel error 0.5".into();
        let rows = vec![wrong.clone(), ok_row("slow_but_right", 1.0)];
        assert_eq!(choose_winner(&rows).unwrap().kernel_name, "slow_but_right");
        assert!(choose_winner(&[wrong]).is_none());
        assert!(choose_winner(&[]).is_none());
    }

    #[test]
    fn winner_rows_use_the_same_near_tie_rule() {
        let a = WinnerRow::from_result(&ok_row("k_b", 1.0)).unwrap();
        let b = WinnerRow::from_result(&ok_row("k_a", 1.003)).unwrap();
        let c = WinnerRow::from_result(&ok_row("k_0", 2.0)).unwrap();
        assert_eq!(
            choose_winner_row(&[a.clone(), b.clone(), c.clone()])
                .unwrap()
                .kernel_name,
            "k_a"
        );
        assert_eq!(choose_winner_row(&[c, b, a]).unwrap().kernel_name, "k_a");
    }

    proptest! {
        #[test]
        fn keep_is_commutative(a in arb_measurement(), b in arb_measurement()) {
            prop_assert_eq!(keep(&a, &b), keep(&b, &a));
        }

        #[test]
        fn keep_is_idempotent(a in arb_measurement()) {
            prop_assert_eq!(keep(&a, &a), &a);
        }

        #[test]
        fn keep_is_associative(a in arb_measurement(), b in arb_measurement(), c in arb_measurement()) {
            prop_assert_eq!(keep(keep(&a, &b), &c), keep(&a, keep(&b, &c)));
        }

        #[test]
        fn support_order_is_antisymmetric(a in arb_measurement(), b in arb_measurement()) {
            prop_assert_eq!(support_order(&a, &b), support_order(&b, &a).reverse());
            prop_assert_eq!(support_order(&a, &b) == Ordering::Equal, a == b);
        }

        #[test]
        fn winner_ignores_row_order(rows in arb_results_of_one_key(), seed in any::<u64>()) {
            let mut shuffled = rows.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            prop_assert_eq!(choose_winner(&rows), choose_winner(&shuffled));
        }

        #[test]
        fn winner_is_ok_and_within_the_near_tie_of_the_fastest(rows in arb_results_of_one_key()) {
            if let Some(w) = choose_winner(&rows) {
                prop_assert_eq!(w.status, Status::Ok);
                let fastest = rows.iter().filter(|r| r.is_eligible())
                    .map(|r| r.timing.unwrap().median_ms).fold(f64::INFINITY, f64::min);
                prop_assert!(w.timing.unwrap().median_ms <= fastest * (1.0 + NEAR_TIE));
            } else {
                prop_assert!(rows.iter().all(|r| !r.is_eligible()));
            }
        }
    }
}
