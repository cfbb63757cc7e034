//! The shape of a fused-attention kernel, read off its IR: which shared tiles and fragments
//! play Q, K, V, S and O, and the warp tiles the dialect lowers.
//!
//! Only the statement sequence the attention template builds is accepted (Q loaded once, a
//! mainloop over key blocks copying K and V, `S = Q·Kᵀ`, mask, online softmax, `O += P·V`,
//! normalize, epilogue to O); anything else is a [`CodegenError`], never a guess.

use crate::dialect::{Dialect, MmaPlan, SmemOperand};
use crate::CodegenError;
use tessera_dsl::ir::{Fragment, Operand, SharedTile, Stmt};
use tessera_dsl::{KernelIr, Layout};

/// Everything a dialect needs to emit the MMA work of one warp for one key block.
#[derive(Debug, Clone)]
pub struct AttnPlan {
    /// `S = Q·Kᵀ`: warp tile `wm × block_kv`, K-dimension `head_dim`; `a` = the Q tile,
    /// `b` = the current K stage (`Col`: each key's `head_dim` values are contiguous).
    pub s: MmaPlan,
    /// `O += P·V`: warp tile `wm × head_dim`, K-dimension `block_kv`; `a` = this warp's P
    /// scratch in shared memory (used only by dialects that re-layout P there), `b` = the
    /// current V stage (`Row`: each key's `head_dim` values are contiguous).
    pub o: MmaPlan,
    /// Whether Q's A fragments stay in registers for the whole loop (else they are re-read
    /// from the Q tile for every key block).
    pub q_resident: bool,
}

/// The IR pieces the emitter walks, by role.
#[derive(Debug, Clone)]
pub struct AttnShape<'a> {
    pub sq: &'a SharedTile,
    pub sk: &'a SharedTile,
    pub sv: &'a SharedTile,
    pub s: &'a Fragment,
    pub acc: &'a Fragment,
    pub block_q: u32,
    pub block_kv: u32,
    pub head_dim: u32,
    pub stages: u32,
}

fn malformed<T>(m: impl Into<String>) -> Result<T, CodegenError> {
    Err(CodegenError::Malformed(m.into()))
}

fn unsupported<T>(m: impl Into<String>) -> Result<T, CodegenError> {
    Err(CodegenError::Unsupported(m.into()))
}

fn tile<'a>(ir: &'a KernelIr, name: &str) -> Result<&'a SharedTile, CodegenError> {
    ir.shared_tile(name)
        .ok_or_else(|| CodegenError::Malformed(format!("unknown shared tile {name}")))
}

/// Match the IR against the attention statement sequence.
pub fn shape(ir: &KernelIr) -> Result<AttnShape<'_>, CodegenError> {
    let frags = ir.fragments();
    let frag = |name: &str| {
        frags
            .iter()
            .copied()
            .find(|f| f.name == name)
            .ok_or_else(|| CodegenError::Malformed(format!("unknown fragment {name}")))
    };
    let body = &ir.body;
    let mut it = body.iter().filter(|s| !matches!(s, Stmt::Fragment(_)));
    let sq = match it.next() {
        Some(Stmt::LoadOnce {
            src: Operand::Q,
            dst,
        }) => tile(ir, dst)?,
        other => {
            return malformed(format!(
                "attention starts with `load q -> ..`, got {other:?}"
            ))
        }
    };
    let (step, stages, copies, lbody) = match it.next() {
        Some(Stmt::Mainloop {
            step,
            stages,
            copies,
            body,
        }) => (*step, *stages, copies, body),
        other => return malformed(format!("attention needs a mainloop after Q, got {other:?}")),
    };
    let copy_of = |src: Operand| -> Result<&SharedTile, CodegenError> {
        let c = copies
            .iter()
            .find(|c| c.src == src)
            .ok_or_else(|| CodegenError::Malformed(format!("mainloop copies no {}", src.name())))?;
        tile(ir, &c.dst)
    };
    if copies.len() != 2 {
        return malformed("the attention mainloop copies exactly K and V");
    }
    let (sk, sv) = (copy_of(Operand::K)?, copy_of(Operand::V)?);
    let (s_name, acc_name) = match lbody.as_slice() {
        [Stmt::Mma {
            acc: s1,
            a: qa,
            b: kb,
            b_transposed: true,
            fresh: true,
            atom: None,
        }, Stmt::Mask { frag: s2 }, Stmt::OnlineSoftmax { scores: s3, acc: o1 }, Stmt::Mma {
            acc: o2,
            a: pa,
            b: vb,
            b_transposed: false,
            fresh: false,
            atom: None,
        }] if s1 == s2
            && s2 == s3
            && s3 == pa
            && o1 == o2
            && *qa == sq.name
            && *kb == sk.name
            && *vb == sv.name =>
        {
            (s1.as_str(), o1.as_str())
        }
        other => {
            return malformed(format!(
                "attention mainloop must be `mma S = Q*K^T; mask S; softmax S online O; mma O += S*V` (default MMA atoms), got {other:?}"
            ))
        }
    };
    match it.next() {
        Some(Stmt::Normalize { acc }) if acc == acc_name => {}
        other => return malformed(format!("expected `normalize {acc_name}`, got {other:?}")),
    }
    match it.next() {
        Some(Stmt::Epilogue {
            acc,
            dst: Operand::O,
            ops,
        }) if acc == acc_name => {
            if !ops.is_empty() {
                return unsupported("epilogue ops on attention output");
            }
        }
        other => {
            return malformed(format!(
                "expected `epilogue {acc_name} -> o`, got {other:?}"
            ))
        }
    }
    if let Some(extra) = it.next() {
        return malformed(format!(
            "unexpected statement after the epilogue: {extra:?}"
        ));
    }
    let (s, acc) = (frag(s_name)?, frag(acc_name)?);
    let head_dim = ir.variant.extent;
    let (block_q, block_kv) = (s.rows, s.cols);
    let checks = [
        (acc.rows == block_q, "O and S fragments have different rows"),
        (acc.cols == head_dim, "O fragment is not head_dim wide"),
        (step == block_kv, "mainloop step differs from S columns"),
        (
            s.warps_n == 1 && acc.warps_n == 1,
            "warps must split rows only",
        ),
        (
            s.warps_m == acc.warps_m,
            "S and O split over different warps",
        ),
        (
            sq.rows == block_q && sq.cols == head_dim,
            "Q tile is not block_q x head_dim",
        ),
        (sq.stages == 1, "Q tile must have one stage"),
        (
            sk.rows == block_kv && sk.cols == head_dim,
            "K tile is not block_kv x head_dim",
        ),
        (
            sv.rows == block_kv && sv.cols == head_dim,
            "V tile is not block_kv x head_dim",
        ),
        (
            sk.stages == stages && sv.stages == stages,
            "K/V tiles must have `stages` stages",
        ),
        (
            [sq, sk, sv]
                .iter()
                .all(|t| t.layout == Layout::Row && t.dtype.size_bytes() == 2),
            "Q/K/V tiles must be row-major 16-bit",
        ),
    ];
    if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
        return malformed(*why);
    }
    if stages < 2 {
        return unsupported("the key-block pipeline needs at least 2 stages");
    }
    if head_dim == 0 || !head_dim.is_multiple_of(16) {
        return unsupported(format!("head_dim {head_dim} is not a multiple of 16"));
    }
    if !block_kv.is_multiple_of(16) {
        return unsupported(format!("block_kv {block_kv} is not a multiple of 16"));
    }
    Ok(AttnShape {
        sq,
        sk,
        sv,
        s,
        acc,
        block_q,
        block_kv,
        head_dim,
        stages,
    })
}

/// Elements between lines of the P scratch (`block_kv` plus 8 elements of padding).
pub fn p_stride(block_kv: u32) -> u32 {
    block_kv + 8
}

/// The per-warp MMA plans, deciding whether Q stays in registers from the target's register
/// budget. A warp tile whose accumulators alone would not fit is rejected: it would spill.
pub fn plan(sh: &AttnShape, d: &dyn Dialect) -> Result<AttnPlan, CodegenError> {
    let atom = d.atom(sh.sq.dtype)?;
    let ws = d.warp_size();
    let (wm, _) = sh.s.warp_tile();
    if !wm.is_multiple_of(16) || !wm.is_multiple_of(atom.m) {
        return unsupported(format!("{wm} query rows per warp is not a multiple of 16"));
    }
    let operand = |t: &SharedTile, ptr: String, layout| SmemOperand {
        ptr,
        stride: t.storage().1,
        layout,
    };
    // values per thread: S and O accumulators (f32), Q fragments (two 16-bit values a register)
    let s_vals = wm * sh.block_kv / ws;
    let o_vals = wm * sh.head_dim / ws;
    let q_regs = wm * sh.head_dim / ws / 2;
    let budget = d.target().nominal_caps().regs_per_thread * 3 / 4;
    if s_vals + o_vals > budget {
        return unsupported(format!(
            "{wm}x{} scores and {wm}x{} output per warp need {} accumulator registers a thread (budget {budget} on {})",
            sh.block_kv,
            sh.head_dim,
            s_vals + o_vals,
            d.target()
        ));
    }
    let q_resident = s_vals + o_vals + q_regs <= budget;
    let s = MmaPlan {
        input: sh.sq.dtype,
        atom,
        wm,
        wn: sh.block_kv,
        tile_k: sh.head_dim,
        warp_row: "wr0".into(),
        warp_col: "0".into(),
        a: operand(sh.sq, format!("s_{}", sh.sq.name), Layout::Row),
        b: operand(sh.sk, format!("s_{}_r", sh.sk.name), Layout::Col),
        acc: format!("f_{}", sh.s.name),
    };
    let o = MmaPlan {
        input: sh.sq.dtype,
        atom,
        wm,
        wn: sh.head_dim,
        tile_k: sh.block_kv,
        warp_row: "wr0".into(),
        warp_col: "0".into(),
        a: SmemOperand {
            ptr: "s_p_w".into(),
            stride: p_stride(sh.block_kv),
            layout: Layout::Row,
        },
        b: operand(sh.sv, format!("s_{}_r", sh.sv.name), Layout::Row),
        acc: format!("f_{}", sh.acc.name),
    };
    Ok(AttnPlan { s, o, q_resident })
}
