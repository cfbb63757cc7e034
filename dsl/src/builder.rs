//! `KernelBuilder`: the API the `#[gpu_template]` expansion calls to assemble a [`KernelIr`].
//!
//! It resolves operand names (`a`, `b`, `c`, `d`, `bias`, `residual`, `word`, ...) against the
//! op's row of the op table (`tessera_ops`, the same row the macro validated against), gives
//! shared tiles their global tensor's dtype and layout, and checks that names used in the body
//! were declared.

use crate::dtype::DType;
use crate::ir::{
    Fragment, GlobalTensor, KernelIr, Operand, ReduceOp, RowExpr, RowIndex, RowTile, SharedTile,
    Stmt, TileCopy,
};
use crate::layout::Layout;
use crate::problem::Mask;
use crate::problem::OpKind;
use crate::space::Config;
use crate::template::BuildError;
use tessera_ops::{Role, Shape};

/// Padding (elements) after each contiguous line of a 16-bit shared tile: 16 bytes, which
/// staggers `ldmatrix` / LDS rows across banks.
pub const SHARED_PAD: u32 = 8;

pub struct KernelBuilder {
    ir: KernelIr,
    /// Open statement lists: the kernel body, then one per open mainloop.
    open: Vec<Vec<Stmt>>,
    loop_header: Option<(u32, u32, Vec<TileCopy>)>,
    /// Row tiles and row scalars declared so far (row-wise kernels).
    row_names: Vec<String>,
    row_scalars: Vec<String>,
}

fn dim(name: &str, v: i64) -> Result<u32, BuildError> {
    u32::try_from(v).ok().filter(|&x| x > 0).ok_or_else(|| {
        BuildError::Malformed(format!("{name} = {v} must be a positive 32-bit size"))
    })
}

impl KernelBuilder {
    pub fn new(config: &Config, op: OpKind) -> Self {
        let v = &config.variant;
        let mut layout_b = Layout::Col;
        if let Some(c) = v.layout.chars().nth(1) {
            layout_b = Layout::from_letter(c).unwrap_or(Layout::Col);
        }
        // the element operands of the op's table row (ids and lengths are i32 arguments, not
        // tensors of the kernel's dtype); every tensor is row-major but a GEMM's B
        let globals = op
            .spec()
            .operands
            .iter()
            .filter(|o| !o.shape.is_int())
            .filter_map(|o| {
                let operand = Operand::from_name(o.name)?;
                Some(GlobalTensor {
                    operand,
                    dtype: match o.role {
                        Role::Input => v.input,
                        Role::Output => v.output,
                    },
                    layout: if operand == Operand::B {
                        layout_b
                    } else {
                        Layout::Row
                    },
                    written: o.written,
                })
            })
            .collect();
        KernelBuilder {
            ir: KernelIr {
                name: config.kernel_name(),
                op,
                variant: config.variant.clone(),
                tile_m: 0,
                tile_n: 0,
                tile_k: 0,
                warps_m: 0,
                warps_n: 0,
                globals,
                shared: Vec::new(),
                body: Vec::new(),
                persistent: false,
                split: 1,
                group_heads: false,
                bulk_store: false,
                multicast: 1,
            },
            open: vec![Vec::new()],
            loop_header: None,
            row_names: Vec::new(),
            row_scalars: Vec::new(),
        }
    }

    fn operand(&self, name: &str) -> Result<&GlobalTensor, BuildError> {
        self.ir
            .globals
            .iter()
            .find(|g| g.operand.name() == name)
            .ok_or_else(|| BuildError::Unknown {
                what: "global tensor",
                name: name.to_string(),
            })
    }

    fn push(&mut self, s: Stmt) {
        if let Some(top) = self.open.last_mut() {
            top.push(s);
        }
    }

    /// `shared NAME: SOURCE[rows, cols] x stages;`
    pub fn shared(
        &mut self,
        name: &str,
        source: &str,
        rows: i64,
        cols: i64,
        stages: i64,
    ) -> Result<(), BuildError> {
        let g = self.operand(source)?.clone();
        let tile = SharedTile {
            name: name.to_string(),
            source: g.operand,
            dtype: g.dtype,
            rows: dim("rows", rows)?,
            cols: dim("cols", cols)?,
            layout: g.layout,
            pad: if g.dtype.size_bytes() == 2 {
                SHARED_PAD
            } else {
                4
            },
            stages: dim("stages", stages)?,
        };
        self.ir.shared.push(tile);
        Ok(())
    }

    /// `fragment NAME: acc[rows, cols] warps [wm, wn];`
    pub fn fragment(
        &mut self,
        name: &str,
        dtype: DType,
        rows: i64,
        cols: i64,
        warps_m: i64,
        warps_n: i64,
    ) -> Result<(), BuildError> {
        let f = Fragment {
            name: name.to_string(),
            dtype,
            rows: dim("rows", rows)?,
            cols: dim("cols", cols)?,
            warps_m: dim("warps_m", warps_m)?,
            warps_n: dim("warps_n", warps_n)?,
        };
        if !f.rows.is_multiple_of(f.warps_m) || !f.cols.is_multiple_of(f.warps_n) {
            return Err(BuildError::Malformed(format!(
                "fragment {}×{} does not split over {}×{} warps",
                f.rows, f.cols, f.warps_m, f.warps_n
            )));
        }
        if self.ir.warps_m == 0 {
            self.ir.tile_m = f.rows;
            self.ir.tile_n = f.cols;
            self.ir.warps_m = f.warps_m;
            self.ir.warps_n = f.warps_n;
        }
        self.push(Stmt::Fragment(f));
        Ok(())
    }

    /// `mainloop ... schedule SCHEDULE`: a nonzero schedule asks for a persistent grid (blocks
    /// walking tiles, [`KernelIr::persistent`]); 0 keeps one tile per block.
    pub fn schedule(&mut self, schedule: i64) -> Result<(), BuildError> {
        match schedule {
            0 | 1 => {
                self.ir.persistent = schedule == 1;
                Ok(())
            }
            s => Err(BuildError::Malformed(format!(
                "schedule {s}: 0 (one tile per block) or 1 (persistent)"
            ))),
        }
    }

    /// `mainloop ... split SPLIT`: the blocks of one cluster that share each tile's reduction
    /// range ([`KernelIr::split`]): 1 (whole), 2, 4 or 8.
    pub fn split(&mut self, split: i64) -> Result<(), BuildError> {
        match split {
            1 | 2 | 4 | 8 => {
                self.ir.split = split as u32;
                Ok(())
            }
            s => Err(BuildError::Malformed(format!(
                "split {s}: 1 (the whole range per block), or 2, 4 or 8 blocks of a cluster"
            ))),
        }
    }

    /// `mainloop ... multicast CTAS`: the blocks of one cluster, adjacent along M, that share
    /// each B tile ([`KernelIr::multicast`]): 1 (each block copies its own) or 2.
    pub fn multicast(&mut self, ctas: i64) -> Result<(), BuildError> {
        match ctas {
            1 | 2 => {
                self.ir.multicast = ctas as u32;
                Ok(())
            }
            c => Err(BuildError::Malformed(format!(
                "multicast {c}: 1 (each block copies its own B tile) or 2 blocks of a cluster"
            ))),
        }
    }

    /// `mainloop ... group GROUP`: 1 makes each tile's rows the query heads of one K/V head's
    /// group ([`KernelIr::group_heads`]); 0 keeps one query head per tile.
    pub fn group(&mut self, group: i64) -> Result<(), BuildError> {
        match group {
            0 | 1 => {
                self.ir.group_heads = group == 1;
                Ok(())
            }
            g => Err(BuildError::Malformed(format!(
                "group {g}: 0 (one query head per tile) or 1 (a K/V group's query heads)"
            ))),
        }
    }

    /// `epilogue ... bulk BULK`: 1 asks for the output tile to leave by bulk tensor copies
    /// ([`KernelIr::bulk_store`]); 0 keeps the warps' own stores.
    pub fn bulk_store(&mut self, bulk: i64) -> Result<(), BuildError> {
        match bulk {
            0 | 1 => {
                self.ir.bulk_store = bulk == 1;
                Ok(())
            }
            b => Err(BuildError::Malformed(format!(
                "bulk {b}: 0 (the warps' own stores) or 1 (bulk tensor copies)"
            ))),
        }
    }

    /// Open `mainloop k step STEP stages STAGES { ... }`.
    pub fn begin_mainloop(&mut self, step: i64, stages: i64) -> Result<(), BuildError> {
        if self.loop_header.is_some() {
            return Err(BuildError::Malformed("mainloops do not nest".into()));
        }
        let step = dim("step", step)?;
        self.loop_header = Some((step, dim("stages", stages)?, Vec::new()));
        self.ir.tile_k = step;
        self.open.push(Vec::new());
        Ok(())
    }

    /// `load SRC -> SHARED;`: one slice per mainloop iteration, or (outside a mainloop) the
    /// whole tile once.
    pub fn load(&mut self, src: &str, dst: &str) -> Result<(), BuildError> {
        let g = self.operand(src)?.operand;
        if self.ir.shared_tile(dst).is_none() {
            return Err(BuildError::Unknown {
                what: "shared tile",
                name: dst.to_string(),
            });
        }
        match self.loop_header.as_mut() {
            Some((_, _, copies)) => {
                copies.push(TileCopy {
                    src: g,
                    dst: dst.to_string(),
                });
                Ok(())
            }
            None => self.load_once(src, dst),
        }
    }

    fn has_fragment(&self, name: &str) -> bool {
        self.open
            .iter()
            .flatten()
            .any(|s| matches!(s, Stmt::Fragment(f) if f.name == name))
    }

    /// `mma ACC += A * B;`
    pub fn mma(&mut self, acc: &str, a: &str, b: &str) -> Result<(), BuildError> {
        self.mma_with(acc, a, b, false, false)
    }

    /// `mma ACC (= or +=) A * B (or B^T);` where A may be a fragment (attention's P).
    pub fn mma_with(
        &mut self,
        acc: &str,
        a: &str,
        b: &str,
        b_transposed: bool,
        fresh: bool,
    ) -> Result<(), BuildError> {
        self.mma_atom(acc, a, b, b_transposed, fresh, None)
    }

    /// `mma ... atom M;`: [`KernelBuilder::mma_with`] asking for the MMA atom with `atom` rows
    /// (a positive parameter value, e.g. 16 or 32); `None` takes the target's default atom.
    pub fn mma_atom(
        &mut self,
        acc: &str,
        a: &str,
        b: &str,
        b_transposed: bool,
        fresh: bool,
        atom: Option<i64>,
    ) -> Result<(), BuildError> {
        let atom = atom
            .map(|m| {
                u32::try_from(m).ok().filter(|&m| m > 0).ok_or_else(|| {
                    BuildError::Malformed(format!("mma atom {m} is not a positive row count"))
                })
            })
            .transpose()?;
        self.need_fragment(acc)?;
        if self.ir.shared_tile(a).is_none() && !self.has_fragment(a) {
            return Err(BuildError::Unknown {
                what: "shared tile or fragment",
                name: a.to_string(),
            });
        }
        if self.ir.shared_tile(b).is_none() {
            return Err(BuildError::Unknown {
                what: "shared tile",
                name: b.to_string(),
            });
        }
        self.push(Stmt::Mma {
            acc: acc.into(),
            a: a.into(),
            b: b.into(),
            b_transposed,
            fresh,
            atom,
        });
        Ok(())
    }

    fn need_fragment(&self, name: &str) -> Result<(), BuildError> {
        if self.has_fragment(name) {
            Ok(())
        } else {
            Err(BuildError::Unknown {
                what: "fragment",
                name: name.to_string(),
            })
        }
    }

    /// `load SRC -> SHARED;` outside a mainloop: the whole tile, once.
    pub fn load_once(&mut self, src: &str, dst: &str) -> Result<(), BuildError> {
        let g = self.operand(src)?.operand;
        if self.ir.shared_tile(dst).is_none() {
            return Err(BuildError::Unknown {
                what: "shared tile",
                name: dst.to_string(),
            });
        }
        self.push(Stmt::LoadOnce {
            src: g,
            dst: dst.into(),
        });
        Ok(())
    }

    /// `mask S;`
    pub fn mask(&mut self, frag: &str) -> Result<(), BuildError> {
        self.need_fragment(frag)?;
        self.push(Stmt::Mask { frag: frag.into() });
        Ok(())
    }

    /// `softmax S online ACC;`
    pub fn online_softmax(&mut self, scores: &str, acc: &str) -> Result<(), BuildError> {
        self.need_fragment(scores)?;
        self.need_fragment(acc)?;
        self.push(Stmt::OnlineSoftmax {
            scores: scores.into(),
            acc: acc.into(),
        });
        Ok(())
    }

    /// `normalize ACC;`
    pub fn normalize(&mut self, acc: &str) -> Result<(), BuildError> {
        self.need_fragment(acc)?;
        self.push(Stmt::Normalize { acc: acc.into() });
        Ok(())
    }

    /// Whether the problem supplies an optional operand (`when OPERAND { ... }`): a fused
    /// residual or bias, or a mask.
    pub fn present(&self, operand: &str) -> bool {
        let v = &self.ir.variant;
        match operand {
            "residual" => v.epilogue.contains(&crate::EpilogueOp::Residual),
            "bias" => v.epilogue.contains(&crate::EpilogueOp::Bias),
            "mask" => v.mask != Mask::None,
            _ => self.operand(operand).is_ok(),
        }
    }

    /// `rows NAME: SRC[ROWS] threads T vector V;`: declare the row tile and load it.
    pub fn rows(
        &mut self,
        name: &str,
        src: &str,
        rows: i64,
        threads: i64,
        vector: i64,
    ) -> Result<(), BuildError> {
        if !self.row_names.is_empty() {
            return Err(BuildError::Malformed(
                "a kernel declares one row tile".into(),
            ));
        }
        let g = self.operand(src)?.operand;
        self.push(Stmt::Rows(RowTile {
            name: name.into(),
            rows: dim("rows", rows)?,
            threads: dim("threads", threads)?,
            vector: dim("vector", vector)?,
        }));
        self.row_names.push(name.to_string());
        self.push(Stmt::RowLoad {
            dst: name.into(),
            src: g,
        });
        Ok(())
    }

    /// `rows NAME: TABLE[INDEX][ROWS] threads T vector V;`: declare the row tile and fill it
    /// from a gather (`expr`, from [`gather_ids`](Self::gather_ids) or
    /// [`gather_row_mod`](Self::gather_row_mod)).
    pub fn rows_gathered(
        &mut self,
        name: &str,
        expr: RowExpr,
        rows: i64,
        threads: i64,
        vector: i64,
    ) -> Result<(), BuildError> {
        if !self.row_names.is_empty() {
            return Err(BuildError::Malformed(
                "a kernel declares one row tile".into(),
            ));
        }
        if !matches!(expr, RowExpr::Gather { .. }) {
            return Err(BuildError::Malformed(format!(
                "`rows {name}` takes an operand or a gather"
            )));
        }
        self.push(Stmt::Rows(RowTile {
            name: name.into(),
            rows: dim("rows", rows)?,
            threads: dim("threads", threads)?,
            vector: dim("vector", vector)?,
        }));
        self.row_names.push(name.to_string());
        self.push(Stmt::Map {
            dst: name.into(),
            expr,
        });
        Ok(())
    }

    /// Resolve a name in a row expression: a row tile, a row scalar, an operand (per-column
    /// vectors `bias`, `gamma`, `beta`; full-size `residual`, `mask`), a runtime argument of
    /// the op's ABI (`eps`, `scale`) or `cols` (the row length).
    pub fn name_expr(&self, name: &str) -> Result<RowExpr, BuildError> {
        if self.row_names.iter().any(|n| n == name) {
            return Ok(RowExpr::Tile(name.into()));
        }
        if self.row_scalars.iter().any(|n| n == name) {
            return Ok(RowExpr::Row(name.into()));
        }
        if name == "cols" {
            return Ok(RowExpr::Extent);
        }
        let abi = crate::ir::abi(self.ir.op, &self.ir.variant);
        if abi
            .iter()
            .any(|a| matches!(a, crate::ir::Arg::F32(n) if *n == name))
        {
            return Ok(RowExpr::Arg(name.into()));
        }
        let shape = self.shape(name)?;
        let g = self.operand(name)?;
        if g.written {
            return Err(BuildError::Malformed(format!(
                "`{name}` is the output; expressions read inputs"
            )));
        }
        match shape {
            Shape::Vector => Ok(RowExpr::Col(g.operand)),
            Shape::Matrix => Ok(RowExpr::At(g.operand)),
            Shape::Table | Shape::Ids | Shape::Lens | Shape::Offsets => Err(BuildError::Malformed(
                format!("`{name}` is read through a gather (`TABLE[IDS]`), not by itself"),
            )),
        }
    }

    /// The shape of an operand of this op (its row of the op table).
    fn shape(&self, name: &str) -> Result<Shape, BuildError> {
        self.ir
            .op
            .spec()
            .operand(name)
            .map(|o| o.shape)
            .ok_or_else(|| BuildError::Unknown {
                what: "operand",
                name: name.to_string(),
            })
    }

    /// `TABLE[IDS]`: the element at this column of row `IDS[row]` of a table operand.
    pub fn gather_ids(&self, table: &str, ids: &str) -> Result<RowExpr, BuildError> {
        let table = self.table(table)?;
        if self.shape(ids)? != Shape::Ids {
            return Err(BuildError::Malformed(format!(
                "`{ids}` is not an id operand; a gather's index is one i32 per row"
            )));
        }
        let ids = Operand::from_name(ids).ok_or_else(|| BuildError::Unknown {
            what: "id operand",
            name: ids.to_string(),
        })?;
        Ok(RowExpr::Gather {
            table,
            index: RowIndex::Ids(ids),
        })
    }

    /// `TABLE[row % SIZE]`: the element at this column of row `row % SIZE` of a table operand,
    /// SIZE an i32 argument of the ABI.
    pub fn gather_row_mod(&self, table: &str, size: &str) -> Result<RowExpr, BuildError> {
        let table = self.table(table)?;
        if !self.ir.op.spec().ints.contains(&size) {
            return Err(BuildError::Unknown {
                what: "i32 size argument",
                name: size.to_string(),
            });
        }
        Ok(RowExpr::Gather {
            table,
            index: RowIndex::RowMod(size.to_string()),
        })
    }

    fn table(&self, name: &str) -> Result<Operand, BuildError> {
        if self.shape(name)? != Shape::Table {
            return Err(BuildError::Malformed(format!(
                "`{name}` is not a table; only table operands are gathered"
            )));
        }
        Ok(self.operand(name)?.operand)
    }

    fn need_row_tile(&self, name: &str) -> Result<(), BuildError> {
        if self.row_names.iter().any(|n| n == name) {
            Ok(())
        } else {
            Err(BuildError::Unknown {
                what: "row tile",
                name: name.to_string(),
            })
        }
    }

    /// `NAME = EXPR;` on a row tile.
    pub fn map(&mut self, dst: &str, expr: RowExpr) -> Result<(), BuildError> {
        self.need_row_tile(dst)?;
        self.push(Stmt::Map {
            dst: dst.into(),
            expr,
        });
        Ok(())
    }

    /// `reduce NAME = sum(EXPR);` / `max(EXPR)`: a new row scalar.
    pub fn row_reduce(&mut self, dst: &str, op: ReduceOp, expr: RowExpr) -> Result<(), BuildError> {
        self.new_scalar(dst)?;
        self.push(Stmt::RowReduce {
            dst: dst.into(),
            op,
            expr,
        });
        Ok(())
    }

    /// `let NAME = EXPR;`: a new row scalar from row scalars.
    pub fn row_let(&mut self, dst: &str, expr: RowExpr) -> Result<(), BuildError> {
        if expr.per_element() {
            return Err(BuildError::Malformed(format!(
                "`let {dst}` reads row elements; use `reduce` to turn a row into a scalar"
            )));
        }
        self.new_scalar(dst)?;
        self.push(Stmt::RowLet {
            dst: dst.into(),
            expr,
        });
        Ok(())
    }

    fn new_scalar(&mut self, name: &str) -> Result<(), BuildError> {
        if self
            .row_scalars
            .iter()
            .chain(&self.row_names)
            .any(|n| n == name)
        {
            return Err(BuildError::Malformed(format!("`{name}` is declared twice")));
        }
        self.row_scalars.push(name.to_string());
        Ok(())
    }

    /// `store NAME -> DST;`
    pub fn row_store(&mut self, src: &str, dst: &str) -> Result<(), BuildError> {
        self.need_row_tile(src)?;
        let g = self.operand(dst)?;
        if !g.written {
            return Err(BuildError::Malformed(format!(
                "`{dst}` is an input; `store` writes an output"
            )));
        }
        let dst = g.operand;
        self.push(Stmt::RowStore {
            src: src.into(),
            dst,
        });
        Ok(())
    }

    /// Close the open mainloop.
    pub fn end_mainloop(&mut self) -> Result<(), BuildError> {
        let (step, stages, copies) = self
            .loop_header
            .take()
            .ok_or_else(|| BuildError::Malformed("no open mainloop".into()))?;
        let body = self.open.pop().unwrap_or_default();
        self.push(Stmt::Mainloop {
            step,
            stages,
            copies,
            body,
        });
        Ok(())
    }

    /// `epilogue ACC -> DST;`: the problem's epilogue chain, then a predicated store.
    pub fn epilogue(&mut self, acc: &str, dst: &str) -> Result<(), BuildError> {
        if !self.has_fragment(acc) {
            return Err(BuildError::Unknown {
                what: "fragment",
                name: acc.to_string(),
            });
        }
        let g = self.operand(dst)?;
        if !g.written {
            return Err(BuildError::Malformed(format!(
                "`{dst}` is an input; the epilogue stores to an output"
            )));
        }
        let dst = g.operand;
        let ops = self.ir.variant.epilogue.clone();
        self.push(Stmt::Epilogue {
            acc: acc.into(),
            dst,
            ops,
        });
        Ok(())
    }

    pub fn finish(mut self) -> Result<KernelIr, BuildError> {
        if self.loop_header.is_some() {
            return Err(BuildError::Malformed("mainloop not closed".into()));
        }
        self.ir.body = self.open.pop().unwrap_or_default();
        if self.ir.warps_m == 0 && self.ir.row_tile().is_none() {
            return Err(BuildError::Malformed(
                "the kernel declares no fragment and no row tile".into(),
            ));
        }
        Ok(self.ir)
    }
}
