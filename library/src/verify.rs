//! The correctness gate: a kernel's output against the reference, before anything is timed.
//!
//! The output buffer is poisoned (all bytes 0xFF, a NaN in every dtype) before the kernel
//! runs, so an element the kernel forgot to write fails as non-finite. Large problems are
//! checked on a deterministic sample that always includes the tile edges (last row/column).

use crate::host::{HostTensor, Rng};
use crate::operands::OpInputs;
use crate::reference::{
    attention_row, embedding_row, gemm_element, layernorm_row, softmax_row, GemmInputs,
};
use tessera_dsl::{DType, GemmProblem, Problem};

/// Outcome of comparing one output with its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// max |out − ref| / max |ref| over the checked elements.
    pub rel_err: f64,
    pub max_abs_err: f64,
    /// Elements compared.
    pub checked: usize,
    /// Checked elements that were NaN or infinite (unwritten or overflowed).
    pub nonfinite: usize,
    /// (batch, row, col) of the worst element.
    pub worst: (u64, u64, u64),
    pub tolerance: f64,
    pub pass: bool,
}

/// Bytes that poison an output buffer before a kernel runs.
pub const POISON_BYTE: u8 = 0xFF;

/// Problems up to this many multiply-adds are checked in full.
pub const FULL_CHECK_MACS: u64 = 1 << 27;

/// Row-wise and attention outputs up to this many elements are checked in full (the check
/// runs once per candidate, so it must stay cheap next to the kernel).
pub const FULL_CHECK_ELEMENTS: u64 = 1 << 20;

/// Elements checked on a large problem (plus its edges).
pub const SAMPLE: usize = 6144;

/// The relative-error bound for an output dtype: f16 2e-3, bf16 1e-2, f32 1e-3.
pub fn tolerance(output: DType) -> f64 {
    match output {
        DType::F16 => 2e-3,
        DType::BF16 => 1e-2,
        DType::F32 => 1e-3,
    }
}

/// Seed of the sampled positions: fixed, so the simulated device can compute exactly the
/// elements that are checked (inputs are fresh every run; positions need not be).
pub const POSITION_SEED: u64 = 0x7E55_E7A0;

/// Which elements to check for `p`: every element of a small problem; otherwise the last row,
/// the last column, the corners and a seeded random sample.
pub fn gemm_positions(p: &GemmProblem) -> Vec<(u64, u64, u64)> {
    if p.m * p.n * p.k * p.batch <= FULL_CHECK_MACS {
        let mut all = Vec::new();
        for b in 0..p.batch {
            for i in 0..p.m {
                for j in 0..p.n {
                    all.push((b, i, j));
                }
            }
        }
        return all;
    }
    let mut rng = Rng::new(POSITION_SEED);
    let mut pos = Vec::with_capacity(SAMPLE + 1024);
    let lb = p.batch - 1;
    for j in (0..p.n).step_by((p.n as usize / 256).max(1)) {
        pos.push((lb, p.m - 1, j));
    }
    for i in (0..p.m).step_by((p.m as usize / 256).max(1)) {
        pos.push((lb, i, p.n - 1));
    }
    pos.extend([
        (0, 0, 0),
        (0, 0, p.n - 1),
        (lb, p.m - 1, 0),
        (lb, p.m - 1, p.n - 1),
    ]);
    for _ in 0..SAMPLE {
        pos.push((rng.below(p.batch), rng.below(p.m), rng.below(p.n)));
    }
    pos
}

/// The reference values at the checked positions of one problem and its inputs: computed
/// once, then every candidate of the problem is compared with them.
#[derive(Debug, Clone)]
pub struct Expected {
    pub positions: Vec<(u64, u64, u64)>,
    pub values: Vec<f64>,
}

/// Reference values for `p` on inputs `x` at [`gemm_positions`].
pub fn expected_gemm(p: &GemmProblem, x: &GemmInputs) -> Expected {
    let positions = gemm_positions(p);
    let values = positions
        .iter()
        .map(|&(b, i, j)| gemm_element(p, x, b, i, j))
        .collect();
    Expected { positions, values }
}

/// Compare a GEMM output (`batch×M×N` packed, as read back) with the reference.
pub fn check_gemm(p: &GemmProblem, x: &GemmInputs, out: &HostTensor) -> Verdict {
    check_gemm_expected(p, &expected_gemm(p, x), out)
}

/// Compare a GEMM output with precomputed reference values.
pub fn check_gemm_expected(p: &GemmProblem, e: &Expected, out: &HostTensor) -> Verdict {
    check_positions(
        p.output,
        e,
        |b, i, j| p.output_index(b, i, j),
        |i| out.values.get(i).copied(),
    )
}

/// Compare a GEMM output still in its device representation (as downloaded) with precomputed
/// reference values, decoding only the checked elements.
pub fn check_gemm_expected_bytes(p: &GemmProblem, e: &Expected, out: &[u8]) -> Verdict {
    check_positions(
        p.output,
        e,
        |b, i, j| p.output_index(b, i, j),
        |i| crate::host::decode_at(p.output, out, i),
    )
}

/// Rows of a row-wise or attention output checked in full: every row of a small problem;
/// otherwise the first and last rows and a seeded sample. A row is `(0, row)` for row-wise
/// ops and `(batch·heads + head, query)` for attention (a packed batch's queries stop at
/// their sequence's length).
pub fn op_rows(problem: &Problem) -> Vec<(u64, u64)> {
    // work: reference operations per output row; width: output elements per row
    let (outer, rows, work, width) = match problem {
        Problem::Gemm(g) => (g.batch, g.m, g.n * g.k, g.n),
        Problem::Layernorm(l) => (1, l.rows, l.cols, l.cols),
        Problem::Softmax(s) => (1, s.rows, s.cols, s.cols),
        Problem::Embedding(e) => (1, e.tokens, e.hidden, e.hidden),
        Problem::Attention(a) => (
            a.batch * a.heads,
            a.seq_q,
            a.seq_kv * a.head_dim,
            a.head_dim,
        ),
    };
    // rows of `outer` index `o` (all `rows` unless packed)
    let rows_of = |o: u64| match problem {
        Problem::Attention(a) if a.packed.is_some() => a.lens(o / a.heads.max(1)).0,
        _ => rows,
    };
    let total = match problem {
        Problem::Attention(a) => a.heads * a.tokens_q(),
        _ => outer * rows,
    };
    if total * work <= FULL_CHECK_MACS && total * width <= FULL_CHECK_ELEMENTS {
        return (0..outer)
            .flat_map(|o| (0..rows_of(o)).map(move |r| (o, r)))
            .collect();
    }
    let mut rng = Rng::new(POSITION_SEED);
    let last = |o: u64| rows_of(o).saturating_sub(1);
    let mut out = vec![
        (0, 0),
        (0, last(0)),
        (outer - 1, 0),
        (outer - 1, last(outer - 1)),
    ];
    let sample = (FULL_CHECK_MACS / work.max(1)).clamp(16, 256);
    for _ in 0..sample {
        let o = rng.below(outer);
        out.push((o, rng.below(rows_of(o).max(1))));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The reference output row `(outer, row)` of a row-wise or attention problem.
pub fn op_row(x: &OpInputs, outer: u64, row: u64) -> Vec<f64> {
    match &x.problem {
        Problem::Layernorm(l) => layernorm_row(l, x, row),
        Problem::Softmax(s) => softmax_row(s, x, row),
        Problem::Attention(a) => attention_row(a, x, outer / a.heads, outer % a.heads, row),
        // an id outside its table has no reference: NaN fails the check rather than passing
        Problem::Embedding(e) => {
            embedding_row(e, x, row).unwrap_or_else(|| vec![f64::NAN; e.hidden as usize])
        }
        Problem::Gemm(_) => Vec::new(),
    }
}

/// Element index in the output buffer of `(outer, row, col)`.
pub fn op_output_index(problem: &Problem, outer: u64, row: u64, col: u64) -> u64 {
    match problem {
        Problem::Gemm(g) => g.output_index(outer, row, col),
        Problem::Layernorm(l) => row * l.cols + col,
        Problem::Softmax(s) => row * s.cols + col,
        Problem::Attention(a) => a.output_index(outer / a.heads, outer % a.heads, row, col),
        Problem::Embedding(e) => row * e.hidden + col,
    }
}

/// Reference values of a row-wise or attention problem at every element of [`op_rows`].
pub fn expected_op(x: &OpInputs) -> Expected {
    let mut positions = Vec::new();
    let mut values = Vec::new();
    for (outer, row) in op_rows(&x.problem) {
        for (col, v) in op_row(x, outer, row).into_iter().enumerate() {
            positions.push((outer, row, col as u64));
            values.push(v);
        }
    }
    Expected { positions, values }
}

/// Compare a row-wise or attention output (as downloaded) with precomputed reference values.
pub fn check_op_expected_bytes(x: &OpInputs, e: &Expected, out: &[u8]) -> Verdict {
    let (dtype, _) = x.output();
    check_positions(
        dtype,
        e,
        |b, i, j| op_output_index(&x.problem, b, i, j),
        |i| crate::host::decode_at(dtype, out, i),
    )
}

fn check_positions(
    output: DType,
    e: &Expected,
    index: impl Fn(u64, u64, u64) -> u64,
    value_at: impl Fn(usize) -> Option<f32>,
) -> Verdict {
    let mut max_ref = 0.0f64;
    let mut max_err = 0.0f64;
    let mut worst = (0, 0, 0);
    let mut nonfinite = 0usize;
    for (&(b, i, j), &want) in e.positions.iter().zip(&e.values) {
        let got = value_at(index(b, i, j) as usize).map_or(f64::NAN, f64::from);
        max_ref = max_ref.max(want.abs());
        // a reference without a value (NaN: e.g. an embedding id outside its table) fails too
        if !got.is_finite() || !want.is_finite() {
            nonfinite += 1;
            worst = (b, i, j);
            max_err = f64::INFINITY;
            continue;
        }
        let err = (got - want).abs();
        if err > max_err {
            max_err = err;
            worst = (b, i, j);
        }
    }
    let rel_err = if max_err.is_finite() {
        max_err / max_ref.max(1e-30)
    } else {
        f64::INFINITY
    };
    let tol = tolerance(output);
    Verdict {
        rel_err,
        max_abs_err: max_err,
        checked: e.positions.len(),
        nonfinite,
        worst,
        tolerance: tol,
        pass: nonfinite == 0 && rel_err <= tol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::gemm;
    use tessera_dsl::EpilogueOp;

    fn rounded(p: &GemmProblem, x: &GemmInputs) -> HostTensor {
        let exact = gemm(p, x);
        HostTensor {
            dtype: p.output,
            values: exact
                .iter()
                .map(|&v| crate::host::round_to(p.output, v as f32))
                .collect(),
        }
    }

    #[test]
    fn correct_output_passes_and_wrong_output_fails() {
        let mut p = GemmProblem::new(33, 40, 48);
        p.epilogue = vec![EpilogueOp::Bias, EpilogueOp::Gelu];
        let x = GemmInputs::random(&p, 3);
        let good = rounded(&p, &x);
        let v = check_gemm(&p, &x, &good);
        assert!(v.pass, "{v:?}");
        assert_eq!(v.checked, 33 * 40);

        let mut bad = good.clone();
        bad.values[40 * 32 + 39] += 0.5; // the last element, a tile edge
        let v = check_gemm(&p, &x, &bad);
        assert!(!v.pass);
        assert_eq!(v.worst, (0, 32, 39));
    }

    #[test]
    fn unwritten_elements_fail_as_nonfinite() {
        let p = GemmProblem::new(16, 16, 16);
        let x = GemmInputs::random(&p, 5);
        let mut out = rounded(&p, &x);
        let poison = HostTensor::from_bytes(p.output, &[POISON_BYTE; 2]).unwrap();
        out.values[7] = poison.values[0];
        let v = check_gemm(&p, &x, &out);
        assert_eq!(v.nonfinite, 1);
        assert!(!v.pass);
    }

    #[test]
    fn op_outputs_are_checked_by_row() {
        use tessera_dsl::{AttentionProblem, Mask, SoftmaxProblem};
        let mut a = AttentionProblem::new(2, 3, 37, 64);
        a.mask = Mask::Causal;
        let x = OpInputs::random(&Problem::Attention(a.clone()), 5).unwrap();
        let e = expected_op(&x);
        assert_eq!(
            e.positions.len(),
            2 * 3 * 37 * 64,
            "small problems are checked in full"
        );
        // write the reference rounded to f16 into an output buffer: it passes
        let (dtype, len) = x.output();
        let mut out = HostTensor {
            dtype,
            values: vec![f32::NAN; len as usize],
        };
        for (&(o, r, c), &v) in e.positions.iter().zip(&e.values) {
            out.values[op_output_index(&x.problem, o, r, c) as usize] =
                crate::host::round_to(dtype, v as f32);
        }
        let v = check_op_expected_bytes(&x, &e, &out.to_bytes());
        assert!(v.pass, "{v:?}");
        // a wrong element in the last query row of the last head fails
        out.values[(len - 1) as usize] += 0.25;
        let v = check_op_expected_bytes(&x, &e, &out.to_bytes());
        assert!(!v.pass);
        assert_eq!(v.worst, (5, 36, 63));

        // token-major O: the same reference values land at [b][s][h][d]
        let mut t = a.clone();
        t.layout = tessera_dsl::AttentionLayout::Bshd;
        let xt = OpInputs::random(&Problem::Attention(t.clone()), 5).unwrap();
        let et = expected_op(&xt);
        assert_eq!(
            et.values, e.values,
            "the layout moves values, never changes them"
        );
        let mut tok = HostTensor {
            dtype,
            values: vec![f32::NAN; len as usize],
        };
        for (&(o, r, c), &v) in et.positions.iter().zip(&et.values) {
            tok.values[op_output_index(&xt.problem, o, r, c) as usize] =
                crate::host::round_to(dtype, v as f32);
        }
        assert!(check_op_expected_bytes(&xt, &et, &tok.to_bytes()).pass);
        // (batch 1, head 0, query 2) sits at token 1·37 + 2, head 0 in token-major order
        let bhsd_at = |b: u64, h: u64, s: u64| (((b * 3 + h) * 37 + s) * 64) as usize;
        let bshd_at = |b: u64, h: u64, s: u64| (((b * 37 + s) * 3 + h) * 64) as usize;
        assert_eq!(out.values[bhsd_at(1, 0, 2)], tok.values[bshd_at(1, 0, 2)]);
        assert_eq!(out.values[bhsd_at(0, 2, 36)], tok.values[bshd_at(0, 2, 36)]);
        // a bhsd-ordered buffer fails the token-major check
        assert!(!check_op_expected_bytes(&xt, &et, &out.to_bytes()).pass);

        // a packed batch: rows stop at each sequence's length, O is token-major like Q
        let mut packed = AttentionProblem::new(1, 2, 1, 32)
            .with_packing(tessera_dsl::Packing::uniform_self(vec![3, 1, 4]));
        packed.kv_heads = 1;
        let pp = Problem::Attention(packed.clone());
        let rows = op_rows(&pp);
        assert_eq!(rows.len(), 2 * (3 + 1 + 4));
        assert!(rows.contains(&(5, 3)) && !rows.contains(&(3, 1)));
        // (sequence 2, head 1, query 3) is token 4 + 3
        assert_eq!(op_output_index(&pp, 5, 3, 7), ((7 * 2) + 1) * 32 + 7);
        let xp = OpInputs::random(&pp, 9).unwrap();
        let ep = expected_op(&xp);
        assert_eq!(ep.positions.len(), 2 * 8 * 32);
        let big = AttentionProblem::new(1, 16, 1, 128)
            .with_packing(tessera_dsl::Packing::uniform_self(vec![1, 2000, 7, 4000]));
        for (o, r) in op_rows(&Problem::Attention(big.clone())) {
            assert!(r < big.lens(o / 16).0, "({o}, {r}) past its sequence");
        }

        for (r, c) in [(65536, 4096), (65536, 1024), (12288, 768)] {
            let rows = op_rows(&Problem::Softmax(SoftmaxProblem::new(r, c)));
            assert!(rows.contains(&(0, r - 1)) && rows.len() > 16 && rows.len() <= 260);
        }
    }

    #[test]
    fn large_problems_sample_edges() {
        let p = GemmProblem::new(4096, 4096, 4096);
        let pos = gemm_positions(&p);
        assert!(pos.len() > SAMPLE);
        assert!(pos.contains(&(0, 4095, 4095)));
        assert!(pos.iter().filter(|&&(_, i, _)| i == 4095).count() >= 256);
    }
}
