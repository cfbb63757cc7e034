//! Row-wise kernels (layernorm, softmax, embedding): rows held in registers, reductions across
//! the threads of a row, elementwise row expressions, a predicated vector store.
//!
//! The lowering is generic over the row statements (`Rows`, `RowLoad`, `Map`, `RowReduce`,
//! `RowLet`, `RowStore`) and any `RowExpr` tree; no statement sequence is special-cased.
//!
//! Kernel shape (see [`shape::RowShape`]): a block is `rows × threads_per_row` threads; thread
//! `t` works on row `blockIdx.x·rows + t / threads_per_row` and holds `chunks` vectors of
//! `vector` elements of it as f32 registers (`float t_NAME[chunks][vector]`). Why:
//! - one pass over global memory: the row is read once, stays in registers through every
//!   reduction and is written once, so the kernel moves the compulsory bytes only;
//! - lanes of a row read adjacent vectors, so each warp access is whole lines, and a vector is
//!   `vector·2` bytes (16 at `vector = 8`): the widest loads and stores;
//! - every chunk's loads are issued before any is used (a load phase per statement that reads
//!   memory, then a compute phase), keeping `chunks` accesses per operand in flight.
//!
//! A gather (`RowExpr::Gather`, an embedding's `word[input_ids]`) reads the table row its
//! index picks for this kernel row (`ids[row]` from an i32 operand, or `row % SIZE`): one
//! base offset per statement, then the same vector loads as any row operand.
//!
//! Memory accesses are predicated per vector on `row < rows && col < cols` (a vector is wholly
//! in or out: `cols` is a multiple of the variant's alignment, which must be `>= vector`).
//! Elements out of bounds hold zeros or garbage but take part in no reduction and are never
//! stored, so the compute phases are branch-free.
//!
//! A reduction folds the thread's valid elements, then butterflies (`shfl_xor`) across the
//! row's lanes of one warp; a row spanning several warps adds one exchange through a static
//! shared array (a slot per reduction, so a single barrier each) and a second butterfly over
//! the per-warp partials. Every thread of the row ends with the row scalar. No thread returns
//! early, so barriers and shuffles see the whole block.

mod expr;
pub mod shape;

use crate::dialect::Dialect;
use crate::kernel::{abi_params, KernelSource};
use crate::source::Source;
use crate::CodegenError;
use expr::{is_identifier, lower, scalar_var, tile_var, Scope};
use shape::RowShape;
use tessera_dsl::ir::{abi, Arg, Operand, ReduceOp, RowExpr, RowIndex, RowTile, Stmt};
use tessera_dsl::{DType, KernelIr};

/// Largest single vector access, bytes.
const MAX_ACCESS_BYTES: u32 = 16;

pub fn emit(ir: &KernelIr, d: &dyn Dialect) -> Result<KernelSource, CodegenError> {
    let tile = ir
        .row_tile()
        .ok_or_else(|| CodegenError::Malformed("row-wise kernel without a row tile".into()))?;
    let shape = RowShape::new(tile, ir.variant.extent, d.warp_size());
    check(ir, tile, &shape, d)?;
    let abi = abi(ir.op, &ir.variant);
    for bound in ["rows", "cols"] {
        if !abi.iter().any(|a| matches!(a, Arg::I32(n) if *n == bound)) {
            return Err(CodegenError::Malformed(format!(
                "op {} has no `{bound}` argument for a row-wise kernel",
                ir.op
            )));
        }
    }
    let reductions = ir
        .body
        .iter()
        .filter(|s| matches!(s, Stmt::RowReduce { .. }))
        .count();

    let threads = shape.block_threads();
    let mut w = Source::new();
    d.prelude(&mut w);
    w.line("");
    w.line(format!(
        "// {} for {}: {} rows per block, {} threads per row, vectors of {}, {} chunks per thread (extent {})",
        ir.name,
        d.target(),
        shape.rows,
        shape.threads,
        shape.vector,
        shape.chunks,
        ir.variant.extent
    ));
    w.line(format!("{} {}(", d.kernel_head(threads), ir.name));
    w.lines(&abi_params(d, &abi));
    w.open(")");
    let mut e = Emitter {
        d,
        w,
        shape,
        abi: &abi,
        tiles: Vec::new(),
        scalars: Vec::new(),
        reduction: 0,
    };
    e.preamble(ir, reductions);
    for s in &ir.body {
        e.stmt(s)?;
    }
    let mut w = e.w;
    w.close("");
    Ok(KernelSource {
        name: ir.name.clone(),
        target: d.target(),
        source: w.finish(),
        threads,
        // the reduction exchange is static shared memory
        smem_bytes: 0,
        tile_m: shape.rows,
        tile_n: ir.variant.extent,
        tensor_maps: Vec::new(),
        schedule: crate::kernel::TileSchedule::PerBlock,
        rows: crate::kernel::TileRows::QueryHead,
    })
}

/// What the lowering relies on.
fn check(
    ir: &KernelIr,
    tile: &RowTile,
    shape: &RowShape,
    d: &dyn Dialect,
) -> Result<(), CodegenError> {
    let unsupported = |m: String| Err(CodegenError::Unsupported(m));
    if ir.variant.extent == 0 {
        return Err(CodegenError::Malformed(
            "row-wise kernel with extent 0".into(),
        ));
    }
    if !tile.threads.is_power_of_two() {
        return unsupported(format!(
            "{} threads per row (the reduction butterfly needs a power of two)",
            tile.threads
        ));
    }
    if !tile.vector.is_power_of_two() || tile.vector < 2 {
        return unsupported(format!(
            "vector {} (needs a power of two >= 2: whole 32-bit words)",
            tile.vector
        ));
    }
    if ir.variant.align < tile.vector {
        return unsupported(format!(
            "vector {} exceeds the row alignment {}: a vector could straddle cols",
            tile.vector, ir.variant.align
        ));
    }
    let threads = shape.block_threads();
    if threads == 0 || threads > 1024 || !threads.is_multiple_of(d.warp_size()) {
        return unsupported(format!(
            "{threads} threads per block on {} (needs whole warps of {}, at most 1024)",
            d.target(),
            d.warp_size()
        ));
    }
    if shape.warps_per_row() > shape.warp {
        return unsupported(format!(
            "a row spans {} warps; the exchange handles at most {}",
            shape.warps_per_row(),
            shape.warp
        ));
    }
    for g in &ir.globals {
        if g.dtype.size_bytes() != 2 {
            return unsupported(format!(
                "{} is {}: row kernels move 16-bit elements",
                g.operand.name(),
                g.dtype.name()
            ));
        }
    }
    for s in &ir.body {
        let names: Vec<&str> = match s {
            Stmt::Rows(t) => vec![&t.name],
            Stmt::RowLoad { dst, .. } | Stmt::Map { dst, .. } => vec![dst],
            Stmt::RowReduce { dst, .. } | Stmt::RowLet { dst, .. } => vec![dst],
            Stmt::RowStore { src, .. } => vec![src],
            other => {
                return Err(CodegenError::Malformed(format!(
                    "statement {other:?} in a row-wise kernel"
                )))
            }
        };
        if let Some(n) = names.iter().find(|n| !is_identifier(n)) {
            return Err(CodegenError::Malformed(format!(
                "`{n}` is not an identifier"
            )));
        }
    }
    Ok(())
}

/// The operands an expression reads, each once, in first-use order.
fn reads(e: &RowExpr, out: &mut Vec<RowExpr>) {
    match e {
        RowExpr::At(_) | RowExpr::Col(_) | RowExpr::Gather { .. } if !out.contains(e) => {
            out.push(e.clone())
        }
        RowExpr::Bin(_, a, b) => {
            reads(a, out);
            reads(b, out);
        }
        RowExpr::Call(_, a) => reads(a, out),
        _ => {}
    }
}

/// Whether any statement reads `At(op)`.
fn reads_at(stmts: &[Stmt], op: Operand) -> bool {
    let wanted = RowExpr::At(op);
    stmts.iter().any(|s| {
        let mut r = Vec::new();
        match s {
            Stmt::RowLoad { src, .. } => return *src == op,
            Stmt::Map { expr, .. } | Stmt::RowReduce { expr, .. } => reads(expr, &mut r),
            _ => {}
        }
        r.contains(&wanted)
    })
}

struct Emitter<'a> {
    d: &'a dyn Dialect,
    w: Source,
    shape: RowShape,
    abi: &'a [Arg],
    tiles: Vec<String>,
    scalars: Vec<String>,
    /// Index of the next reduction's exchange slot.
    reduction: usize,
}

impl Emitter<'_> {
    fn has_i32_ptr(&self, name: &str) -> bool {
        self.abi
            .iter()
            .any(|a| matches!(a, Arg::I32Ptr(n) if *n == name))
    }

    fn has_i32(&self, name: &str) -> bool {
        self.abi
            .iter()
            .any(|a| matches!(a, Arg::I32(n) if *n == name))
    }

    fn f32_args(&self) -> Vec<&'static str> {
        self.abi
            .iter()
            .filter_map(|a| match a {
                Arg::F32(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// Pointer dtype of an operand in the ABI.
    fn pointer(&self, op: Operand, written: bool) -> Result<DType, CodegenError> {
        self.abi
            .iter()
            .find_map(|a| match a {
                Arg::Ptr {
                    name,
                    dtype,
                    written: w,
                } if *name == op.name() && *w == written => Some(*dtype),
                _ => None,
            })
            .ok_or_else(|| {
                CodegenError::Malformed(format!(
                    "`{}` is not {} pointer of the launch ABI",
                    op.name(),
                    if written { "an output" } else { "an input" }
                ))
            })
    }

    /// Indices, bounds and the per-chunk predicates every statement uses.
    fn preamble(&mut self, ir: &KernelIr, reductions: usize) {
        let s = self.shape;
        let w = &mut self.w;
        if s.warps_per_row() > 1 && reductions > 0 {
            w.line(format!(
                "__shared__ float tsr_red[{reductions}][{}][{}];",
                s.rows,
                s.warps_per_row()
            ));
        }
        w.line("const int tid = threadIdx.x;");
        w.line(format!(
            "const int rib = tid / {};  // row in block",
            s.threads
        ));
        w.line(format!(
            "const int lane = tid % {};  // lane in row",
            s.threads
        ));
        w.line(format!("const int row = blockIdx.x * {} + rib;", s.rows));
        w.line("const long long row_base = (long long)row * cols;");
        if reads_at(&ir.body, Operand::Mask) {
            w.line("const long long mask_base = (long long)(row / mask_period) * cols;");
        }
        w.line("const bool row_ok = row < rows;");
        w.line(format!("const int col0 = lane * {};", s.vector));
    }

    /// `for c` over chunks; with `bounds`, also `ok`: the chunk is in bounds (its first column
    /// is `(c·threads + lane)·vector`), recomputed per loop (cheap, and no per-chunk predicate
    /// array stays live: NVIDIA has 7 predicate registers).
    fn open_chunks(&mut self, bounds: bool) {
        let s = self.shape;
        self.w.line("#pragma unroll");
        self.w
            .open(format!("for (int c = 0; c < {}; ++c)", s.chunks));
        if bounds {
            self.w.line(format!(
                "const bool ok = row_ok && col0 + {} < cols;",
                self.chunk_offset()
            ));
        }
    }

    /// Elements between a thread's chunk `c` and its chunk 0 (a C expression in `c`).
    fn chunk_offset(&self) -> String {
        format!("c * {}", self.shape.threads * self.shape.vector)
    }

    /// `const T* NAME = op + base + col0;`: one pointer per operand and statement, so every
    /// chunk's access is that pointer plus a constant (an immediate offset after unrolling).
    fn thread_pointer(&mut self, name: &str, op: Operand, dtype: DType, base: &str, written: bool) {
        let ty = self.d.storage_type(dtype);
        let cst = if written { "" } else { "const " };
        self.w.line(format!(
            "{cst}{ty}* __restrict__ {name} = {} + {base}col0;",
            op.name()
        ));
    }

    fn open_elements(&mut self) {
        self.w.line("#pragma unroll");
        self.w
            .open(format!("for (int j = 0; j < {}; ++j)", self.shape.vector));
    }

    /// (words per access, accesses per vector).
    fn access(&self, dtype: DType) -> (u32, u32) {
        let bytes = self.shape.vector * dtype.size_bytes();
        let piece = bytes.min(MAX_ACCESS_BYTES);
        (piece / 4, bytes / piece)
    }

    /// Load phase: every chunk of each read into `unsigned wK[chunks][words]` (zeros where
    /// out of bounds); returns the f32 value of each read at (c, j).
    fn load_reads(&mut self, list: &[RowExpr]) -> Result<Vec<(RowExpr, String)>, CodegenError> {
        let mut values = Vec::new();
        for (k, r) in list.iter().enumerate() {
            let gather_base;
            let (op, base) = match r {
                RowExpr::Gather { table, index } => {
                    let row = match index {
                        RowIndex::Ids(ids) if self.has_i32_ptr(ids.name()) => {
                            format!("{}[row]", ids.name())
                        }
                        RowIndex::RowMod(size) if self.has_i32(size) && is_identifier(size) => {
                            format!("row % {size}")
                        }
                        other => {
                            return Err(CodegenError::Malformed(format!(
                                "gather index {other:?} is not an i32 operand or size of the ABI"
                            )))
                        }
                    };
                    // rows past `rows` read table row 0 (never stored, never reduced)
                    self.w.line(format!(
                        "const long long g{k} = row_ok ? (long long)({row}) * cols : 0;  // {} row",
                        table.name()
                    ));
                    gather_base = format!("g{k} + ");
                    (*table, gather_base.as_str())
                }
                RowExpr::At(Operand::Mask) => {
                    if !self.has_i32("mask_period") {
                        return Err(CodegenError::Malformed(
                            "the mask is read but the ABI has no mask_period".into(),
                        ));
                    }
                    (Operand::Mask, "mask_base + ")
                }
                RowExpr::At(o) => (*o, "row_base + "),
                RowExpr::Col(o) => (*o, ""),
                _ => continue,
            };
            let dtype = self.pointer(op, false)?;
            let (words, pieces) = self.access(dtype);
            let total = words * pieces;
            let ty = self.d.word_vector(words);
            let buf = format!("w{k}");
            self.w.line(format!(
                "unsigned {buf}[{}][{total}];  // {}",
                self.shape.chunks,
                op.name()
            ));
            let ptr = format!("p{k}");
            self.thread_pointer(&ptr, op, dtype, base, false);
            self.open_chunks(true);
            self.w.open("if (ok)");
            for p in 0..pieces {
                let at = p * words * 4 / dtype.size_bytes();
                self.w.line(format!(
                    "const {ty} v{p} = *(const {ty}*)({ptr} + {} + {at});",
                    self.chunk_offset()
                ));
                for i in 0..words {
                    self.w.line(format!(
                        "{buf}[c][{}] = {};",
                        p * words + i,
                        component(&format!("v{p}"), i, words)
                    ));
                }
            }
            self.w.close("");
            self.w.open("else");
            for i in 0..total {
                self.w.line(format!("{buf}[c][{i}] = 0u;"));
            }
            self.w.close("");
            self.w.close("");
            let half = format!("(unsigned short)({buf}[c][j >> 1] >> ((j & 1) << 4))");
            values.push((r.clone(), self.d.to_float(dtype, &half)));
        }
        Ok(values)
    }

    fn lower_element(
        &self,
        e: &RowExpr,
        operands: &[(RowExpr, String)],
    ) -> Result<String, CodegenError> {
        let args = self.f32_args();
        lower(
            e,
            self.d,
            &Scope {
                tiles: &self.tiles,
                scalars: &self.scalars,
                args: &args,
                operands,
                per_element: true,
            },
        )
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), CodegenError> {
        match s {
            Stmt::Rows(t) => {
                self.w.line(format!(
                    "float {}[{}][{}];  // row tile",
                    tile_var(&t.name),
                    self.shape.chunks,
                    self.shape.vector
                ));
                self.tiles.push(t.name.clone());
                Ok(())
            }
            Stmt::RowLoad { dst, src } => self.map(dst, &RowExpr::At(*src)),
            Stmt::Map { dst, expr } => self.map(dst, expr),
            Stmt::RowReduce { dst, op, expr } => self.reduce(dst, *op, expr),
            Stmt::RowLet { dst, expr } => {
                let args = self.f32_args();
                let v = lower(
                    expr,
                    self.d,
                    &Scope {
                        tiles: &self.tiles,
                        scalars: &self.scalars,
                        args: &args,
                        operands: &[],
                        per_element: false,
                    },
                )?;
                self.w
                    .line(format!("const float {} = {v};", scalar_var(dst)));
                self.scalars.push(dst.clone());
                Ok(())
            }
            Stmt::RowStore { src, dst } => self.store(src, *dst),
            other => Err(CodegenError::Malformed(format!(
                "statement {other:?} in a row-wise kernel"
            ))),
        }
    }

    fn need_tile(&self, name: &str) -> Result<(), CodegenError> {
        if self.tiles.iter().any(|t| t == name) {
            Ok(())
        } else {
            Err(CodegenError::Malformed(format!(
                "unknown row tile `{name}`"
            )))
        }
    }

    /// `dst[c][j] = expr` for every element: load phase, then a branch-free compute phase.
    fn map(&mut self, dst: &str, e: &RowExpr) -> Result<(), CodegenError> {
        self.need_tile(dst)?;
        let mut list = Vec::new();
        reads(e, &mut list);
        self.w.open("");
        let operands = self.load_reads(&list)?;
        let v = self.lower_element(e, &operands)?;
        self.open_chunks(false);
        self.open_elements();
        self.w.line(format!("{}[c][j] = {v};", tile_var(dst)));
        self.w.close("");
        self.w.close("");
        self.w.close("");
        Ok(())
    }

    fn reduce(&mut self, dst: &str, op: ReduceOp, e: &RowExpr) -> Result<(), CodegenError> {
        if self.scalars.iter().any(|n| n == dst) {
            return Err(CodegenError::Malformed(format!(
                "row scalar `{dst}` defined twice"
            )));
        }
        let inf = self.d.infinity();
        let (identity, combine): (String, fn(&str, &str) -> String) = match op {
            ReduceOp::Sum => ("0.f".into(), |a, b| format!("{a} + {b}")),
            ReduceOp::Max => (format!("-{inf}"), |a, b| format!("fmaxf({a}, {b})")),
        };
        let mut list = Vec::new();
        reads(e, &mut list);
        let var = scalar_var(dst);
        self.w.line(format!("float {var};"));
        self.w.open("");
        let operands = self.load_reads(&list)?;
        let v = self.lower_element(e, &operands)?;
        self.w.line(format!("float a = {identity};"));
        self.open_chunks(true);
        self.w.open("if (ok)");
        self.open_elements();
        self.w.line(format!("a = {};", combine("a", &v)));
        self.w.close("");
        self.w.close("");
        self.w.close("");
        self.butterfly(self.shape.shuffle_width(), combine);
        let wpr = self.shape.warps_per_row();
        if wpr > 1 {
            let k = self.reduction;
            self.w
                .line("// the row spans several warps: exchange the per-warp partials");
            self.w.line(format!(
                "if ((lane & {}) == 0) tsr_red[{k}][rib][lane / {}] = a;",
                self.shape.warp - 1,
                self.shape.warp
            ));
            self.d.barrier(&mut self.w);
            self.w
                .line(format!("a = tsr_red[{k}][rib][lane & {}];", wpr - 1));
            self.butterfly(wpr, combine);
        }
        self.reduction += 1;
        self.w.line(format!("{var} = a;"));
        self.w.close("");
        self.scalars.push(dst.to_string());
        Ok(())
    }

    /// Fold `a` across groups of `width` lanes (xor butterfly: all lanes end with the result).
    fn butterfly(&mut self, width: u32, combine: fn(&str, &str) -> String) {
        let mut offset = width / 2;
        while offset > 0 {
            let other = self.d.shfl_xor("a", offset);
            self.w.line(format!("a = {};", combine("a", &other)));
            offset /= 2;
        }
    }

    /// Predicated vector store of a row tile, converted to the destination's dtype.
    fn store(&mut self, src: &str, dst: Operand) -> Result<(), CodegenError> {
        self.need_tile(src)?;
        let dtype = self.pointer(dst, true)?;
        let (words, pieces) = self.access(dtype);
        let ty = self.d.word_vector(words);
        let t = tile_var(src);
        self.w.open("");
        self.thread_pointer("p", dst, dtype, "row_base + ", true);
        self.open_chunks(true);
        self.w.open("if (ok)");
        for p in 0..pieces {
            self.w.line(format!("{ty} v{p};"));
            for i in 0..words {
                let j = (p * words + i) * 2;
                let lo = self.d.to_storage(dtype, &format!("{t}[c][{j}]"));
                let hi = self.d.to_storage(dtype, &format!("{t}[c][{}]", j + 1));
                self.w.line(format!(
                    "{} = (unsigned){lo} | ((unsigned){hi} << 16);",
                    component(&format!("v{p}"), i, words)
                ));
            }
            let at = p * words * 4 / dtype.size_bytes();
            self.w.line(format!(
                "*({ty}*)(p + {} + {at}) = v{p};",
                self.chunk_offset()
            ));
        }
        self.w.close("");
        self.w.close("");
        self.w.close("");
        Ok(())
    }
}

/// Component `i` of a vector of `words` 32-bit words.
fn component(v: &str, i: u32, words: u32) -> String {
    if words == 1 {
        v.to_string()
    } else {
        format!("{v}.{}", ["x", "y", "z", "w"][i as usize % 4])
    }
}
