//! `KernelBuilder`: the API the `#[gpu_template]` expansion calls to assemble a [`KernelIr`].
//!
//! It resolves operand names (`a`, `b`, `c`, `d`, `bias`, `residual`) against the op's launch
//! ABI, gives shared tiles their global tensor's dtype and layout, and checks that names used in
//! the body were declared.

use crate::dtype::DType;
use crate::ir::{Fragment, GlobalTensor, KernelIr, Operand, SharedTile, Stmt, TileCopy};
use crate::layout::Layout;
use crate::problem::OpKind;
use crate::space::Config;
use crate::template::BuildError;

/// Padding (elements) after each contiguous line of a 16-bit shared tile: 16 bytes, which
/// staggers `ldmatrix` / LDS rows across banks.
pub const SHARED_PAD: u32 = 8;

pub struct KernelBuilder {
    ir: KernelIr,
    /// Open statement lists: the kernel body, then one per open mainloop.
    open: Vec<Vec<Stmt>>,
    loop_header: Option<(u32, u32, Vec<TileCopy>)>,
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
        let globals = match op {
            OpKind::Gemm => vec![
                GlobalTensor {
                    operand: Operand::A,
                    dtype: v.input,
                    layout: Layout::Row,
                    written: false,
                },
                GlobalTensor {
                    operand: Operand::B,
                    dtype: v.input,
                    layout: layout_b,
                    written: false,
                },
                GlobalTensor {
                    operand: Operand::C,
                    dtype: v.output,
                    layout: Layout::Row,
                    written: false,
                },
                GlobalTensor {
                    operand: Operand::D,
                    dtype: v.output,
                    layout: Layout::Row,
                    written: true,
                },
                GlobalTensor {
                    operand: Operand::Bias,
                    dtype: v.output,
                    layout: Layout::Row,
                    written: false,
                },
                GlobalTensor {
                    operand: Operand::Residual,
                    dtype: v.output,
                    layout: Layout::Row,
                    written: false,
                },
            ],
            _ => Vec::new(),
        };
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
            },
            open: vec![Vec::new()],
            loop_header: None,
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

    /// `load SRC -> SHARED;` inside a mainloop.
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
            None => Err(BuildError::Malformed(
                "`load` is only allowed inside a mainloop".into(),
            )),
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
        if !self.has_fragment(acc) {
            return Err(BuildError::Unknown {
                what: "fragment",
                name: acc.to_string(),
            });
        }
        for s in [a, b] {
            if self.ir.shared_tile(s).is_none() {
                return Err(BuildError::Unknown {
                    what: "shared tile",
                    name: s.to_string(),
                });
            }
        }
        self.push(Stmt::Mma {
            acc: acc.into(),
            a: a.into(),
            b: b.into(),
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
        if self.ir.warps_m == 0 {
            return Err(BuildError::Malformed(
                "the kernel declares no fragment".into(),
            ));
        }
        Ok(self.ir)
    }
}
