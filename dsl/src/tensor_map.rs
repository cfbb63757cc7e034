//! TMA tensor maps as launch arguments: how a kernel's pipeline asks the host for a bulk-copy
//! descriptor of one of its ABI tensors, and the geometry rules such a descriptor must meet.
//!
//! A pipeline that copies tiles with the tensor-memory accelerator (sm_90a) declares one
//! [`TensorMapArg`] per staged operand. It names the ABI arguments the map is built from, so the
//! caller's argument list stays the op's ABI; the device resolves the declaration against the
//! launch's values and the size of the buffer region bound to the tensor
//! ([`TensorMapArg::resolve_in`]: a packed batch's token count is no argument, so its maps take
//! their line count from the region, [`Extent::RegionLines`]) and encodes the map, which is
//! passed after the ABI arguments, in declaration order, as a 128-byte `__grid_constant__`
//! parameter.
//!
//! Pure data and arithmetic: no driver, no I/O.

use crate::DType;
use serde::{Deserialize, Serialize};

/// Shared-memory swizzle of a tile: the 16-byte chunks of each `span`-byte line are permuted by
/// XOR with the line index within a repeating group of 8 lines (CUTLASS `Swizzle<b, 4, 3>`).
/// The tensor map writes tiles in this pattern and the wgmma descriptor reads them in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Swizzle {
    B32,
    B64,
    B128,
}

impl Swizzle {
    /// The swizzle whose span is `bytes` (the contiguous extent of one tile line).
    pub fn for_line_bytes(bytes: u32) -> Option<Swizzle> {
        match bytes {
            32 => Some(Swizzle::B32),
            64 => Some(Swizzle::B64),
            128 => Some(Swizzle::B128),
            _ => None,
        }
    }

    /// Bytes of one swizzled line.
    pub fn span(self) -> u32 {
        match self {
            Swizzle::B32 => 32,
            Swizzle::B64 => 64,
            Swizzle::B128 => 128,
        }
    }

    /// Bytes of one repeating pattern (8 lines): a swizzled tile must start at a multiple.
    pub fn atom_bytes(self) -> u32 {
        self.span() * 8
    }

    /// Where byte `offset` of an unswizzled tile (lines of `span` bytes, the tile starting at a
    /// multiple of [`Swizzle::atom_bytes`]) lands in shared memory.
    pub fn apply(self, offset: u32) -> u32 {
        let chunks = self.span() / 16; // 16-byte chunks per line: 2, 4 or 8
        let line = (offset / self.span()) % 8;
        let chunk = (offset / 16) % chunks;
        let swizzled = chunk ^ (line % chunks);
        offset - chunk * 16 + swizzled * 16
    }
}

/// A launch quantity a tensor map is built from: an integer ABI argument, a constant fixed at
/// code generation (a head size), an argument times a constant (a head's elements,
/// `seq_kv × head_dim`), or (line counts only) what the bound buffer region holds. A string
/// converts to [`Extent::Arg`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Extent {
    Arg(String),
    Const(u64),
    Scaled(String, u64),
    /// The product of two arguments (attention's K/V heads of all batches: `batch × kv_heads`).
    Product(String, String),
    /// The product of two arguments and a constant (the elements of a batch's queries of all
    /// heads: `heads × seq_q × head_dim`).
    ProductScaled(String, String, u64),
    /// As many lines as the tensor's bound region holds: its bytes over the bytes between
    /// lines (a packed batch's token count, which no argument carries). Only for
    /// [`TensorMapArg::lines`], and only resolved with the region's size
    /// ([`TensorMapArg::resolve_in`]); the region must hold a whole, non-zero number of lines.
    RegionLines,
}

impl From<&str> for Extent {
    fn from(arg: &str) -> Extent {
        Extent::Arg(arg.to_string())
    }
}

impl Extent {
    /// The value for one launch; `value(name)` returns an integer argument's value.
    fn value(&self, value: &dyn Fn(&str) -> Option<i64>) -> Result<u64, String> {
        let get = |arg: &str| -> Result<u64, String> {
            let v = value(arg).ok_or_else(|| format!("no integer argument `{arg}`"))?;
            u64::try_from(v).map_err(|_| format!("`{arg}` is negative ({v})"))
        };
        match self {
            Extent::Arg(a) => get(a),
            Extent::Const(c) => Ok(*c),
            Extent::Scaled(a, c) => get(a)?
                .checked_mul(*c)
                .ok_or_else(|| format!("`{a}` × {c} overflows")),
            Extent::Product(a, b) => get(a)?
                .checked_mul(get(b)?)
                .ok_or_else(|| format!("`{a}` × `{b}` overflows")),
            Extent::ProductScaled(a, b, c) => get(a)?
                .checked_mul(get(b)?)
                .and_then(|x| x.checked_mul(*c))
                .ok_or_else(|| format!("`{a}` × `{b}` × {c} overflows")),
            Extent::RegionLines => {
                Err("only a map's line count can come from its region's size".into())
            }
        }
    }
}

/// How to build one tensor map from a launch: a 3-D view `[batch][lines][inner]` of the ABI
/// tensor `tensor`, copied in boxes of `box_lines × box_inner` elements.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorMapArg {
    /// The kernel parameter's name (`tmap_a`).
    pub name: String,
    /// The ABI pointer argument the map points into.
    pub tensor: String,
    pub dtype: DType,
    /// The contiguous extent (elements).
    pub inner: Extent,
    /// The number of lines (an argument, or as many as the bound region holds:
    /// [`Extent::RegionLines`]).
    pub lines: Extent,
    /// The elements between lines.
    pub line_stride: Extent,
    /// The elements between batches.
    pub batch_stride: Extent,
    /// The number of batches; absent: the grid's y × z extent (GEMM batches, attention's batch ×
    /// heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches: Option<Extent>,
    pub box_inner: u32,
    pub box_lines: u32,
    /// The integer argument whose value, rounded up to [`TensorMapArg::CAP_LINES_MULTIPLE`],
    /// caps the lines per box: a GEMM's A box for a small M, so TMA fills fewer out-of-bounds
    /// lines (`box_lines` stays the shared tile's height; lines past the box are never read for
    /// a stored row). Absent: `box_lines`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_lines_cap: Option<String>,
    pub swizzle: Swizzle,
}

/// A tensor map's geometry in the driver's terms, innermost dimension first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorMapGeometry {
    /// Elements per dimension.
    pub dims: [u64; 3],
    /// Bytes between consecutive elements of dimensions 1 and 2.
    pub strides: [u64; 2],
    /// Box extent per dimension.
    pub boxes: [u32; 3],
    /// Bytes per element.
    pub elem_bytes: u32,
}

/// Why a tensor map cannot describe a launch's tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor map `{name}` over `{tensor}`: {reason}")]
pub struct TensorMapError {
    pub name: String,
    pub tensor: String,
    pub reason: String,
}

/// The largest stride the tensor memory accelerator takes (bytes, exclusive).
const MAX_STRIDE: u64 = 1 << 40;
/// The largest box extent.
const MAX_BOX: u32 = 256;

impl TensorMapArg {
    /// The geometry for one launch, given the values of the ABI arguments the map names
    /// (`value(name)` returns an integer argument's value) and the launch's batch count (used
    /// unless the map names its own [`TensorMapArg::batches`]), checked
    /// against every rule of the driver's `cuTensorMapEncodeTiled`, so a violation is a
    /// readable error here rather than an opaque driver code.
    pub fn resolve(
        &self,
        value: &dyn Fn(&str) -> Option<i64>,
        batch: u64,
    ) -> Result<TensorMapGeometry, TensorMapError> {
        self.resolve_in(value, batch, None)
    }

    /// [`TensorMapArg::resolve`] with the byte length of the buffer region bound to
    /// [`TensorMapArg::tensor`], which a map whose [`TensorMapArg::lines`] is
    /// [`Extent::RegionLines`] needs (`None`: that map is an error); other maps ignore it.
    pub fn resolve_in(
        &self,
        value: &dyn Fn(&str) -> Option<i64>,
        batch: u64,
        region_bytes: Option<u64>,
    ) -> Result<TensorMapGeometry, TensorMapError> {
        let fail = |reason: String| TensorMapError {
            name: self.name.clone(),
            tensor: self.tensor.clone(),
            reason,
        };
        let get = |e: &Extent| e.value(value).map_err(&fail);
        let batch = match &self.batches {
            Some(e) => get(e)?,
            None => batch,
        };
        let elem = u64::from(self.dtype.size_bytes());
        let inner = get(&self.inner)?;
        let line_stride = get(&self.line_stride)? * elem;
        let lines = match (&self.lines, region_bytes) {
            (Extent::RegionLines, None) => {
                return Err(fail(
                    "its line count comes from the bound region, whose size is unknown".into(),
                ))
            }
            (Extent::RegionLines, Some(bytes)) => region_lines(bytes, line_stride).map_err(fail)?,
            (lines, _) => get(lines)?,
        };
        if inner == 0 || lines == 0 || batch == 0 {
            return Err(fail(format!(
                "empty tensor ({batch} x {lines} x {inner} elements)"
            )));
        }
        let batch_stride = if batch == 1 {
            // one batch: the stride is never followed; any legal value will do
            (lines * line_stride).max(16)
        } else {
            get(&self.batch_stride)? * elem
        };
        for (what, s) in [("line", line_stride), ("batch", batch_stride)] {
            if s % 16 != 0 || s == 0 || s >= MAX_STRIDE {
                return Err(fail(format!(
                    "the {what} stride of {s} bytes is not a non-zero multiple of 16 below 2^40 (TMA needs 16-byte aligned rows)"
                )));
            }
        }
        if line_stride < inner * elem {
            return Err(fail(format!(
                "lines of {inner} elements overlap (stride {line_stride} bytes)"
            )));
        }
        let box_bytes = self.box_inner * self.dtype.size_bytes();
        if box_bytes > self.swizzle.span() || !box_bytes.is_multiple_of(16) {
            return Err(fail(format!(
                "a box line of {box_bytes} bytes does not fit the {}-byte swizzle",
                self.swizzle.span()
            )));
        }
        if self.box_lines == 0 || self.box_lines > MAX_BOX {
            return Err(fail(format!("a box of {} lines (1..=256)", self.box_lines)));
        }
        let box_lines = match &self.box_lines_cap {
            Some(cap) => {
                let multiple = u64::from(Self::CAP_LINES_MULTIPLE);
                let cap = get(&Extent::Arg(cap.clone()))?.div_ceil(multiple).max(1) * multiple;
                self.box_lines.min(u32::try_from(cap).unwrap_or(u32::MAX))
            }
            None => self.box_lines,
        };
        Ok(TensorMapGeometry {
            dims: [inner, lines, batch],
            strides: [line_stride, batch_stride],
            boxes: [self.box_inner, box_lines, 1],
            elem_bytes: self.dtype.size_bytes(),
        })
    }

    /// A capped box's lines are its argument rounded up to this (one swizzle atom of lines).
    pub const CAP_LINES_MULTIPLE: u32 = 8;

    /// Bytes one box occupies in shared memory, and copies when uncapped (out-of-bounds
    /// elements included: they are filled and counted).
    pub fn box_bytes(&self) -> u32 {
        self.box_inner * self.box_lines * self.dtype.size_bytes()
    }

    /// The C expression (`unsigned`) of the bytes `copies` boxes copy at a launch, what an
    /// mbarrier expects of them: a constant, or for a capped box `min(box_lines, the cap
    /// argument rounded up) × the line's bytes`, as [`TensorMapArg::resolve`] sizes the box.
    pub fn copy_bytes_expr(&self, copies: u32) -> String {
        match &self.box_lines_cap {
            None => format!("{}u", copies * self.box_bytes()),
            Some(cap) => {
                let round = Self::CAP_LINES_MULTIPLE - 1;
                format!(
                    "min({}u, ((unsigned){cap} + {round}u) & ~{round}u) * {}u",
                    self.box_lines,
                    copies * self.box_inner * self.dtype.size_bytes()
                )
            }
        }
    }
}

/// Lines of `line_stride` bytes in a region of `bytes` bytes: a whole, non-zero number.
fn region_lines(bytes: u64, line_stride: u64) -> Result<u64, String> {
    if line_stride == 0 {
        return Err("a line count from the region needs a non-zero line stride".into());
    }
    if bytes == 0 || !bytes.is_multiple_of(line_stride) {
        return Err(format!(
            "its region of {bytes} bytes is not a whole, non-zero number of {line_stride}-byte lines"
        ));
    }
    Ok(bytes / line_stride)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map_a() -> TensorMapArg {
        TensorMapArg {
            name: "tmap_a".into(),
            tensor: "a".into(),
            dtype: DType::F16,
            inner: "K".into(),
            lines: "M".into(),
            line_stride: "lda".into(),
            batch_stride: "stride_a".into(),
            batches: None,
            box_inner: 64,
            box_lines: 128,
            box_lines_cap: None,
            swizzle: Swizzle::B128,
        }
    }

    fn args(k: i64, m: i64, lda: i64, stride: i64) -> impl Fn(&str) -> Option<i64> {
        move |n| match n {
            "K" => Some(k),
            "M" => Some(m),
            "lda" => Some(lda),
            "stride_a" => Some(stride),
            _ => None,
        }
    }

    #[test]
    fn geometry_of_a_row_major_operand() {
        let g = map_a().resolve(&args(768, 384, 768, 0), 1).unwrap();
        assert_eq!(g.dims, [768, 384, 1]);
        assert_eq!(g.strides, [1536, 384 * 1536]);
        assert_eq!(g.boxes, [64, 128, 1]);
        assert_eq!(map_a().box_bytes(), 64 * 128 * 2);
        let g = map_a().resolve(&args(64, 100, 72, 7200), 3).unwrap();
        assert_eq!(g.strides, [144, 14400]);
    }

    /// A capped box copies the argument's lines rounded up to 8, never more than `box_lines`.
    #[test]
    fn a_capped_box_copies_a_small_m_only() {
        let capped = TensorMapArg {
            box_lines_cap: Some("M".into()),
            ..map_a()
        };
        for (m, lines) in [
            (1, 8),
            (8, 8),
            (9, 16),
            (64, 64),
            (100, 104),
            (128, 128),
            (4096, 128),
        ] {
            let g = capped.resolve(&args(768, m, 768, 0), 1).unwrap();
            assert_eq!(g.boxes, [64, lines, 1], "M = {m}");
        }
        // what the kernel's mbarrier expects of two such boxes, in C
        assert_eq!(
            capped.copy_bytes_expr(2),
            "min(128u, ((unsigned)M + 7u) & ~7u) * 256u"
        );
        assert_eq!(map_a().copy_bytes_expr(2), "32768u");
        // the uncapped map keeps its box whatever M is
        assert_eq!(
            map_a().resolve(&args(768, 1, 768, 0), 1).unwrap().boxes,
            [64, 128, 1]
        );
    }

    #[test]
    fn rules_of_the_driver_are_named() {
        let e = map_a().resolve(&args(770, 384, 770, 0), 1).unwrap_err();
        assert!(
            e.to_string()
                .contains("1540 bytes is not a non-zero multiple of 16"),
            "{e}"
        );
        let e = map_a().resolve(&args(64, 64, 64, 0), 2).unwrap_err();
        assert!(e.to_string().contains("batch stride of 0 bytes"), "{e}");
        let e = map_a().resolve(&args(64, 0, 64, 0), 1).unwrap_err();
        assert!(e.to_string().contains("empty tensor"), "{e}");
        let e = map_a().resolve(&args(64, 64, 32, 0), 1).unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
        let mut wide = map_a();
        wide.box_inner = 128;
        let e = wide.resolve(&args(256, 64, 256, 0), 1).unwrap_err();
        assert!(
            e.to_string()
                .contains("256 bytes does not fit the 128-byte swizzle"),
            "{e}"
        );
        let mut tall = map_a();
        tall.box_lines = 512;
        assert!(tall.resolve(&args(64, 64, 64, 0), 1).is_err());
        let e = map_a().resolve(&|_| None, 1).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("tensor map `tmap_a` over `a`: no integer argument `K`"));
    }

    /// A packed attention operand: `[tokens][heads][64]` seen as `[heads][tokens][64]`, the
    /// token count from the region.
    fn map_packed() -> TensorMapArg {
        TensorMapArg {
            name: "tmap_q".into(),
            tensor: "q".into(),
            dtype: DType::F16,
            inner: Extent::Const(64),
            lines: Extent::RegionLines,
            line_stride: Extent::Scaled("heads".into(), 64),
            batch_stride: Extent::Const(64),
            batches: Some("heads".into()),
            box_inner: 64,
            box_lines: 64,
            box_lines_cap: None,
            swizzle: Swizzle::B128,
        }
    }

    fn heads(h: i64) -> impl Fn(&str) -> Option<i64> {
        move |n| (n == "heads").then_some(h)
    }

    #[test]
    fn lines_from_the_region() {
        // 759 tokens of 8 heads × 64 f16 elements
        let g = map_packed()
            .resolve_in(&heads(8), 1, Some(759 * 8 * 64 * 2))
            .unwrap();
        assert_eq!(g.dims, [64, 759, 8]);
        assert_eq!(g.strides, [8 * 64 * 2, 64 * 2]);
        assert_eq!(g.boxes, [64, 64, 1]);
        // one head: the batch stride is never followed
        let g = map_packed()
            .resolve_in(&heads(1), 1, Some(3 * 128))
            .unwrap();
        assert_eq!(g.dims, [64, 3, 1]);
        // other maps ignore the region
        assert_eq!(
            map_a().resolve_in(&args(768, 384, 768, 0), 1, Some(7)),
            map_a().resolve(&args(768, 384, 768, 0), 1)
        );
    }

    #[test]
    fn region_lines_must_be_whole_and_known() {
        let e = map_packed().resolve_in(&heads(8), 1, Some(0)).unwrap_err();
        assert!(
            e.to_string()
                .contains("region of 0 bytes is not a whole, non-zero number of 1024-byte lines"),
            "{e}"
        );
        let e = map_packed()
            .resolve_in(&heads(8), 1, Some(1024 * 5 + 512))
            .unwrap_err();
        assert!(e.to_string().contains("5632 bytes is not a whole"), "{e}");
        let e = map_packed().resolve(&heads(8), 1).unwrap_err();
        assert!(e.to_string().contains("size is unknown"), "{e}");
        let mut misplaced = map_a();
        misplaced.inner = Extent::RegionLines;
        let e = misplaced
            .resolve_in(&args(64, 64, 64, 0), 1, Some(1 << 20))
            .unwrap_err();
        assert!(e.to_string().contains("only a map's line count"), "{e}");
        let e = map_packed()
            .resolve_in(&heads(0), 1, Some(1024))
            .unwrap_err();
        assert!(e.to_string().contains("non-zero line stride"), "{e}");
    }

    #[test]
    fn swizzle_examples() {
        // 128B: line 1's chunk 0 moves to chunk 1; line 7's chunk 7 to chunk 0
        assert_eq!(Swizzle::B128.apply(128), 128 + 16);
        assert_eq!(Swizzle::B128.apply(7 * 128 + 7 * 16 + 3), 7 * 128 + 3);
        assert_eq!(Swizzle::B128.apply(8 * 128 + 16), 8 * 128 + 16);
        // 64B: 4 chunks a line; line 5 xors with 1
        assert_eq!(Swizzle::B64.apply(5 * 64 + 2 * 16), 5 * 64 + 3 * 16);
        assert_eq!(Swizzle::for_line_bytes(128), Some(Swizzle::B128));
        assert_eq!(Swizzle::for_line_bytes(96), None);
    }

    proptest! {
        /// A region of whole lines resolves to exactly its line count, and the map then spans
        /// the region exactly; any other non-empty region is refused.
        #[test]
        fn region_lines_span_the_region(h in 1i64..=16, tokens in 1u64..5000, extra in 0u64..1024) {
            let line = 64 * 2 * h as u64;
            let bytes = tokens * line + extra;
            match map_packed().resolve_in(&heads(h), 1, Some(bytes)) {
                Ok(g) => {
                    prop_assert_eq!(extra % line, 0);
                    prop_assert_eq!(g.dims[1], bytes / line);
                    let last = g.strides[1] * (g.dims[2] - 1)
                        + g.strides[0] * (g.dims[1] - 1)
                        + g.dims[0] * u64::from(g.elem_bytes);
                    prop_assert_eq!(last, bytes);
                }
                Err(e) => {
                    prop_assert!(extra % line != 0);
                    prop_assert!(e.to_string().contains("not a whole"));
                }
            }
        }

        /// The swizzle permutes 16-byte chunks inside each line: a bijection on every atom that
        /// keeps bytes inside their line and their offset inside their chunk.
        #[test]
        fn swizzle_is_a_chunk_permutation_within_lines(which in 0usize..3, atom in 0u32..64) {
            let s = [Swizzle::B32, Swizzle::B64, Swizzle::B128][which];
            let base = atom * s.atom_bytes();
            let mut seen = vec![false; s.atom_bytes() as usize];
            for off in base..base + s.atom_bytes() {
                let to = s.apply(off);
                prop_assert_eq!(to / s.span(), off / s.span());
                prop_assert_eq!(to % 16, off % 16);
                let slot = (to - base) as usize;
                prop_assert!(!seen[slot]);
                seen[slot] = true;
            }
        }
    }
}
