//! Feasibility: whether every config that satisfies the constraints yields a kernel the
//! targets can run. Checked at compile time over the whole space:
//!
//! - every size is a positive 32-bit integer (and evaluating it cannot divide by zero);
//! - the mainloop step (the MMA's K) and each warp tile are multiples of the MMA atom, and an
//!   `mma ... atom M` asks for an atom some target has (M = 16 or 32) that divides the warp tile;
//! - `mma` operands have matching shapes (a GEMM's K slices match the step; a block product
//!   such as attention's `S = Q·Kᵀ` agrees on one K), and loaded tiles hold the loop's stages;
//! - a row tile's block (rows × threads) fits [`MAX_THREADS`] and its vector is 1, 2, 4 or 8;
//! - the smallest config's shared memory fits the largest target;
//! - no two configs get the same label (the label is part of the one kernel name).

use crate::expr::{text, Node};
use crate::kernel::TileOp;
use crate::target::{ATOM_K, ATOM_M, ATOM_N, ATOM_ROWS, MAX_SMEM, MAX_SMEM_TARGET, MAX_THREADS};
use crate::template::{point_text, Param, Template};
use proc_macro2::TokenStream;
use std::collections::{HashMap, HashSet};
use syn::Ident;

struct Shared<'a> {
    name: &'a Ident,
    elem: i64,
    rows: &'a Node,
    cols: &'a Node,
    stages: Option<&'a Node>,
    at: &'a TokenStream,
}

struct Fragment<'a> {
    name: &'a Ident,
    rows: &'a Node,
    cols: &'a Node,
    warps_m: &'a Node,
    warps_n: &'a Node,
    at: &'a TokenStream,
}

/// An `mma` inside a loop, by index into the shared tiles and fragments.
struct Mma<'a> {
    at: &'a TokenStream,
    names: (&'a Ident, &'a Ident, &'a Ident),
    acc: usize,
    /// A shared tile, or (`Err`) a fragment.
    a: Result<usize, usize>,
    b: usize,
    b_transposed: bool,
    fresh: bool,
    /// `atom M`: the atom rows asked for.
    atom: Option<&'a Node>,
}

/// A `load` inside a loop, by index into the shared tiles.
struct Load<'a> {
    at: &'a TokenStream,
    name: &'a Ident,
    tile: usize,
}

struct Loop<'a> {
    step: &'a Node,
    stages: &'a Node,
    mmas: Vec<Mma<'a>>,
    loads: Vec<Load<'a>>,
}

/// Errors found so far, one per key (the first failing config is representative).
struct Report {
    seen: HashSet<String>,
    errors: Vec<syn::Error>,
}

impl Report {
    fn once(&mut self, key: String, at: impl quote::ToTokens, message: impl FnOnce() -> String) {
        if self.seen.insert(key) {
            self.errors.push(syn::Error::new_spanned(at, message()));
        }
    }
}

fn position(names: &[String], ident: &Ident) -> usize {
    let name = ident.to_string();
    names
        .iter()
        .position(|n| *n == name)
        .expect("validated: declared before use")
}

/// A row tile's sizes (`rows NAME: OPERAND[ROWS] threads T vector V;`).
struct RowTile<'a> {
    rows: &'a Node,
    threads: &'a Node,
    vector: &'a Node,
    at: &'a TokenStream,
}

/// What the space is checked against: the kernel's shared tiles, fragments and row tiles, and
/// each mainloop's statements by index into the tiles and fragments.
struct Kernel<'a> {
    shared: Vec<Shared<'a>>,
    fragments: Vec<Fragment<'a>>,
    loops: Vec<Loop<'a>>,
    row_tiles: Vec<RowTile<'a>>,
}

impl<'a> Kernel<'a> {
    fn of(t: &'a Template) -> Kernel<'a> {
        let mut shared = Vec::new();
        let mut fragments = Vec::new();
        let mut loop_stmts = Vec::new();
        let mut row_tiles = Vec::new();
        for s in &t.kernel {
            match &s.op {
                TileOp::Shared {
                    name,
                    operand,
                    rows,
                    cols,
                    stages,
                } => {
                    let role = t.op.operand(&operand.to_string()).expect("validated").role;
                    shared.push(Shared {
                        name,
                        elem: t.dtypes.min_size(role),
                        rows,
                        cols,
                        stages: stages.as_ref(),
                        at: &s.at,
                    });
                }
                TileOp::Fragment {
                    name,
                    rows,
                    cols,
                    warps_m,
                    warps_n,
                } => {
                    fragments.push(Fragment {
                        name,
                        rows,
                        cols,
                        warps_m,
                        warps_n,
                        at: &s.at,
                    });
                }
                TileOp::Mainloop {
                    step, stages, body, ..
                } => loop_stmts.push((step, stages, body)),
                TileOp::Rows {
                    rows,
                    threads,
                    vector,
                    ..
                } => row_tiles.push(RowTile {
                    rows,
                    threads,
                    vector,
                    at: &s.at,
                }),
                _ => {}
            }
        }
        let shared_names: Vec<String> = shared.iter().map(|s| s.name.to_string()).collect();
        let fragment_names: Vec<String> = fragments.iter().map(|f| f.name.to_string()).collect();
        let loops = loop_stmts
            .into_iter()
            .map(|(step, stages, body)| {
                let mut l = Loop {
                    step,
                    stages,
                    mmas: Vec::new(),
                    loads: Vec::new(),
                };
                for s in body {
                    match &s.op {
                        TileOp::Mma {
                            acc,
                            a,
                            b,
                            b_transposed,
                            fresh,
                            atom,
                        } => l.mmas.push(Mma {
                            at: &s.at,
                            names: (acc, a, b),
                            acc: position(&fragment_names, acc),
                            a: if shared_names.contains(&a.to_string()) {
                                Ok(position(&shared_names, a))
                            } else {
                                Err(position(&fragment_names, a))
                            },
                            b: position(&shared_names, b),
                            b_transposed: *b_transposed,
                            fresh: *fresh,
                            atom: atom.as_ref(),
                        }),
                        TileOp::Load { shared: name, .. } => l.loads.push(Load {
                            at: &s.at,
                            name,
                            tile: position(&shared_names, name),
                        }),
                        _ => {}
                    }
                }
                l
            })
            .collect();
        Kernel {
            shared,
            fragments,
            loops,
            row_tiles,
        }
    }
}

/// One point of the space under check.
struct At<'a> {
    params: &'a [Param],
    point: &'a [i64],
}

impl At<'_> {
    /// The point as the diagnostics print it.
    fn here(&self) -> String {
        point_text(self.params, self.point)
    }

    /// A size at this point, if it is a positive 32-bit integer; else report it (once).
    fn size(&self, node: &Node, what: &dyn Fn() -> String, report: &mut Report) -> Option<i64> {
        match node.eval(self.point) {
            Err(f) => {
                report.once(format!("size {}", node.source), &f.source, || {
                    let fix = match &f.guard {
                        Some(g) => format!("exclude such configs with a constraint, e.g. `{g}`"),
                        None => "constrain the parameters so it stays in range".to_string(),
                    };
                    format!("{} at {}; {fix}", f.message, self.here())
                });
                None
            }
            Ok(v) if v <= 0 || v > i64::from(u32::MAX) => {
                // One report per expression: the same size often appears in several places.
                report.once(format!("size {}", node.source), &node.source, || {
                    let fix = if v <= 0 {
                        format!("constrain it, e.g. `{} > 0`", text(&node.source))
                    } else {
                        "shrink it".to_string()
                    };
                    format!(
                        "{} is `{}` = {v} at {}, but sizes must be positive 32-bit integers; {fix}",
                        what(),
                        node.source,
                        self.here(),
                    )
                });
                None
            }
            Ok(v) => Some(v),
        }
    }
}

/// The sizes every point's checks share: each shared tile's (rows, cols, stages) and each
/// fragment's (rows, cols), `None` where one does not resolve.
struct Sizes {
    tiles: Vec<Option<(i64, i64, i64)>>,
    frags: Vec<Option<(i64, i64)>>,
}

/// Check the whole space; `head` (`mod NAME`) is where space-wide errors point.
pub fn check(t: &Template, head: &TokenStream) -> syn::Result<()> {
    let mut points = crate::space::satisfying(&t.params, &t.constraints, head)?;
    // a point mixing values that disjoint targets alone offer (`+ sm_90a [192]` with
    // `+ gfx942 [32]`) is a kernel of no target
    points.retain(|p| offered_somewhere(t, p));
    let k = Kernel::of(t);

    let mut report = Report {
        seen: HashSet::new(),
        errors: Vec::new(),
    };
    let mut smallest: Option<(i128, &Vec<i64>)> = None;
    let mut sizes = Sizes {
        tiles: vec![None; k.shared.len()],
        frags: vec![None; k.fragments.len()],
    };
    for point in &points {
        let at = At {
            params: &t.params,
            point,
        };
        if let Some(b) = shared_tiles(&at, &k.shared, &mut sizes.tiles, &mut report) {
            if !matches!(smallest, Some((min, _)) if min <= b) {
                smallest = Some((b, point));
            }
        }
        fragment_tiles(&at, &k.fragments, &mut sizes.frags, &mut report);
        row_tiles(&at, &k.row_tiles, &mut report);
        for l in &k.loops {
            mainloop(t, &at, l, &k.fragments, &sizes, &mut report);
        }
    }

    if let (Some((min, point)), Some(first)) = (smallest, k.shared.first()) {
        if min > i128::from(MAX_SMEM) {
            report.once("smem".to_string(), first.at, || {
                format!(
                    "shared memory needs at least {min} bytes (smallest config: {}) but no supported \
                     target offers more than {MAX_SMEM} bytes per block ({MAX_SMEM_TARGET}); shrink the \
                     tiles or the stages",
                    point_text(&t.params, point)
                )
            });
        }
    }

    if report.errors.is_empty() {
        labels(t, &points, head, &mut report);
    }

    let mut errors = report.errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            for e in errors {
                first.combine(e);
            }
            Err(first)
        }
    }
}

/// Shared tiles at one point: their sizes into `tiles`, and the bytes they take together
/// (`None` where a size does not resolve).
fn shared_tiles(
    at: &At,
    shared: &[Shared],
    tiles: &mut [Option<(i64, i64, i64)>],
    report: &mut Report,
) -> Option<i128> {
    let mut bytes: Option<i128> = Some(0);
    for (s, slot) in shared.iter().zip(tiles.iter_mut()) {
        let rows = at.size(s.rows, &|| format!("rows of `{}`", s.name), report);
        let cols = at.size(s.cols, &|| format!("cols of `{}`", s.name), report);
        let stages = match s.stages {
            Some(n) => at.size(n, &|| format!("stages of `{}`", s.name), report),
            None => Some(1),
        };
        *slot = match (rows, cols, stages) {
            (Some(r), Some(c), Some(st)) => {
                bytes = bytes.map(|b| {
                    b + i128::from(r) * i128::from(c) * i128::from(s.elem) * i128::from(st)
                });
                Some((r, c, st))
            }
            _ => {
                bytes = None;
                None
            }
        };
    }
    bytes
}

/// Fragments at one point: their sizes into `frags`, and warp tiles that divide evenly into
/// whole MMA atoms.
fn fragment_tiles(
    at: &At,
    fragments: &[Fragment],
    frags: &mut [Option<(i64, i64)>],
    report: &mut Report,
) {
    for (f, slot) in fragments.iter().zip(frags.iter_mut()) {
        let rows = at.size(f.rows, &|| format!("rows of `{}`", f.name), report);
        let cols = at.size(f.cols, &|| format!("cols of `{}`", f.name), report);
        let wm = at.size(
            f.warps_m,
            &|| format!("warps of `{}` along rows", f.name),
            report,
        );
        let wn = at.size(
            f.warps_n,
            &|| format!("warps of `{}` along cols", f.name),
            report,
        );
        *slot = None;
        let (Some(rows), Some(cols), Some(wm), Some(wn)) = (rows, cols, wm, wn) else {
            continue;
        };
        *slot = Some((rows, cols));
        for (dim, total, warps, tn, wnode, atom_name, atom) in [
            ("rows", rows, wm, f.rows, f.warps_m, "M", ATOM_M),
            ("cols", cols, wn, f.cols, f.warps_n, "N", ATOM_N),
        ] {
            if total % warps == 0 && (total / warps) % atom == 0 {
                continue;
            }
            let (tt, wt) = (text(&tn.source), text(&wnode.source));
            let fix = format!("constrain it, e.g. `{tt} % ({wt} * {atom}) == 0`");
            report.once(format!("warp {} {dim}", f.name), f.at, || {
                if total % warps != 0 {
                    format!(
                        "warp tile {dim} {tt} / {wt} = {total} / {warps} does not divide evenly \
                         (at {}); {fix}",
                        at.here()
                    )
                } else {
                    format!(
                        "warp tile {dim} {tt} / {wt} = {total} / {warps} = {} is not a multiple of \
                         the MMA atom {atom_name} ({atom}); {fix}",
                        total / warps
                    )
                }
            });
        }
    }
}

/// Row tiles at one point: sizes, threads per block and the vector width.
fn row_tiles(at: &At, row_tiles: &[RowTile], report: &mut Report) {
    for rt in row_tiles {
        let r = at.size(rt.rows, &|| "rows per block".to_string(), report);
        let th = at.size(rt.threads, &|| "threads per row".to_string(), report);
        let v = at.size(rt.vector, &|| "vector width".to_string(), report);
        if let (Some(r), Some(th)) = (r, th) {
            if r * th > MAX_THREADS {
                let (rs, ts) = (text(&rt.rows.source), text(&rt.threads.source));
                report.once("row threads".to_string(), rt.at, || {
                    format!(
                        "a block of {rs} × {ts} = {r} × {th} = {} threads (at {}) exceeds the \
                         {MAX_THREADS} threads every target allows; constrain it, e.g. \
                         `{rs} * {ts} <= {MAX_THREADS}`",
                        r * th,
                        at.here()
                    )
                });
            }
        }
        if let Some(v) = v {
            if ![1, 2, 4, 8].contains(&v) {
                report.once(format!("vector {v}"), &rt.vector.source, || {
                    format!(
                        "vector width `{}` = {v} at {}: a thread accesses 1, 2, 4 or 8 \
                         contiguous elements (at most 16 bytes); use one of those",
                        rt.vector.source,
                        at.here()
                    )
                });
            }
        }
    }
}

/// A mainloop at one point: its step against the atom's K, its `mma` shapes, and the stages
/// of the tiles it loads.
fn mainloop(
    t: &Template,
    at: &At,
    l: &Loop,
    fragments: &[Fragment],
    sizes: &Sizes,
    report: &mut Report,
) {
    let step = at.size(l.step, &|| "mainloop step".to_string(), report);
    let stages = at.size(l.stages, &|| "mainloop stages".to_string(), report);
    if let (Some(step), false) = (step, l.mmas.is_empty()) {
        step_atom(t, at, l, step, report);
    }
    for mma in &l.mmas {
        if let Some(node) = mma.atom {
            atom_rows(node, &fragments[mma.acc], at.point, &|| at.here(), report);
        }
        if let Some(step) = step {
            mma_shapes(at, mma, step, sizes, report);
        }
    }
    for load in &l.loads {
        let (Some(stages), Some((_, _, held))) = (stages, sizes.tiles[load.tile]) else {
            continue;
        };
        if held < stages {
            let name = load.name;
            report.once(format!("stages {}", load.at), load.at, || {
                format!(
                    "`{name}` holds {held} stage(s) but this mainloop keeps {stages} in flight \
                     (at {}); declare it with `x {}`",
                    at.here(),
                    l.stages.source
                )
            });
        }
    }
}

/// A mainloop with `mma`s steps by whole MMA atoms of K: reported at the parameter's value
/// where the step is one parameter, else at the step's expression.
fn step_atom(t: &Template, at: &At, l: &Loop, step: i64, report: &mut Report) {
    if step % ATOM_K == 0 {
        return;
    }
    match l.step.param() {
        Some(i) => {
            let p = &t.params[i];
            let j = p
                .values
                .iter()
                .position(|&v| v == step)
                .expect("a value of the param");
            report.once(format!("step value {step}"), &p.literals[j], || {
                format!(
                    "{} = {step} is not a multiple of the MMA atom K ({ATOM_K}); use 16, 32 or 64",
                    p.ident
                )
            });
        }
        None => {
            let st = text(&l.step.source);
            report.once(format!("step {}", l.step.source), &l.step.source, || {
                format!(
                    "mainloop step {} = {step} at {} is not a multiple of the MMA atom K \
                     ({ATOM_K}); constrain it, e.g. `{st} % {ATOM_K} == 0`",
                    l.step.source,
                    at.here()
                )
            });
        }
    }
}

/// The operand shapes of one `mma` at one point: a GEMM mainloop's K slices match the step; a
/// block product (attention's `S = Q·Kᵀ`) agrees on one K, a multiple of the atom's.
fn mma_shapes(at: &At, mma: &Mma, step: i64, sizes: &Sizes, report: &mut Report) {
    let a = match mma.a {
        Ok(i) => sizes.tiles[i].map(|(r, c, _)| (r, c)),
        Err(i) => sizes.frags[i],
    };
    let (Some((m, n)), Some(ta), Some(tb)) = (sizes.frags[mma.acc], a, sizes.tiles[mma.b]) else {
        return;
    };
    let (acc, a, b) = mma.names;
    if mma.a.is_ok() && !mma.b_transposed && !mma.fresh {
        // A GEMM mainloop: both operands are K slices of the loop's step.
        if (ta.0, ta.1, tb.0, tb.1) != (m, step, step, n) {
            report.once(format!("mma {}", mma.at), mma.at, || {
                format!(
                    "shapes of `mma {acc} += {a} * {b}` disagree at {}: {acc} is {m}×{n}, \
                     {a} is {}×{}, {b} is {}×{} and the mainloop step is {step}; \
                     it needs {a} = {m}×{step} (rows of {acc} × step) and {b} = {step}×{n} \
                     (step × cols of {acc})",
                    at.here(),
                    ta.0,
                    ta.1,
                    tb.0,
                    tb.1
                )
            });
        }
        return;
    }
    // A block-level product (attention): A is M×K, B (or Bᵀ) is K×N.
    let (tb, bt) = if mma.b_transposed {
        ((tb.1, tb.0), format!("{b}^T"))
    } else {
        ((tb.0, tb.1), b.to_string())
    };
    let eq = if mma.fresh { "=" } else { "+=" };
    if ta.0 != m || ta.1 != tb.0 || tb.1 != n {
        let flip = if ta.0 == m && ta.1 == tb.1 && tb.0 == n {
            if mma.b_transposed {
                format!("; did you mean `{b}` (without `^T`)?")
            } else {
                format!("; did you mean `{b}^T`?")
            }
        } else {
            String::new()
        };
        report.once(format!("mma {}", mma.at), mma.at, || {
            format!(
                "shapes of `mma {acc} {eq} {a} * {bt}` disagree at {}: {acc} is {m}×{n}, \
                 {a} is {}×{} and {bt} is {}×{}; it needs {a} = {m}×K and {bt} = K×{n} \
                 for one K{flip}",
                at.here(),
                ta.0,
                ta.1,
                tb.0,
                tb.1
            )
        });
    } else if ta.1 % ATOM_K != 0 {
        report.once(format!("mma k {}", mma.at), mma.at, || {
            format!(
                "`mma {acc} {eq} {a} * {bt}` reduces over K = {} at {}, which is not a \
                 multiple of the MMA atom K ({ATOM_K}); constrain the sizes so it is",
                ta.1,
                at.here()
            )
        });
    }
}

/// Whether some target offers every value of `point` (a value in no `+ TARGET [...]` list is
/// offered everywhere).
fn offered_somewhere(t: &Template, point: &[i64]) -> bool {
    crate::target::TARGETS.iter().any(|(_, variant)| {
        t.params.iter().zip(point).all(|(p, v)| {
            let only: Vec<&str> = p
                .target_values
                .iter()
                .filter(|(_, vs)| vs.contains(v))
                .map(|(t, _)| *t)
                .collect();
            only.is_empty() || only.contains(variant)
        })
    })
}

/// `mma ... atom M`: M is a row count some target has an atom of ([`ATOM_ROWS`]), and the
/// accumulator's warp tile is a multiple of the M×M atom.
fn atom_rows(
    node: &Node,
    f: &Fragment,
    point: &[i64],
    here: &dyn Fn() -> String,
    report: &mut Report,
) {
    let Ok(m) = node.eval(point) else {
        return;
    };
    let src = text(&node.source);
    if !ATOM_ROWS.contains(&m) {
        report.once(format!("atom {m}"), &node.source, || {
            format!(
                "`atom {src}` = {m} at {}: MMA atoms have {} rows; use one of those",
                here(),
                ATOM_ROWS
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        });
        return;
    }
    let (Ok(rows), Ok(cols), Ok(wm), Ok(wn)) = (
        f.rows.eval(point),
        f.cols.eval(point),
        f.warps_m.eval(point),
        f.warps_n.eval(point),
    ) else {
        return;
    };
    if wm <= 0 || wn <= 0 || rows % wm != 0 || cols % wn != 0 {
        return;
    }
    let (tm, tn) = (rows / wm, cols / wn);
    if tm % m != 0 || tn % m != 0 {
        let (rt, wt) = (text(&f.rows.source), text(&f.warps_m.source));
        report.once(format!("atom warp {}", f.name), &node.source, || {
            format!(
                "`{}`'s warp tile {tm}×{tn} is not a multiple of the {m}×{m} atom `atom {src}` asks for (at {}); constrain it, e.g. `{rt} % ({wt} * {src}) == 0`",
                f.name,
                here()
            )
        });
    }
}

/// No two configs may share a label: it is part of the one kernel name.
fn labels(t: &Template, points: &[Vec<i64>], head: &TokenStream, report: &mut Report) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, point) in points.iter().enumerate() {
        let label = t.label.render(point);
        if let Some(&j) = seen.get(&label) {
            let at = match &t.label.format {
                Some(f) => quote::quote!(#f),
                None => head.clone(),
            };
            let missing: Vec<String> = t
                .label
                .missing(t.params.len())
                .into_iter()
                .filter(|&k| points[i][k] != points[j][k])
                .map(|k| format!("{{{}}}", t.params[k].ident))
                .collect();
            let fix = if missing.is_empty() {
                "make it unambiguous, e.g. separate the placeholders with `x` or `_`".to_string()
            } else {
                format!("add {} to the label", missing.join(", "))
            };
            report.once("label".to_string(), &at, || {
                format!(
                    "the label gives two configs the same kernel name `{label}` ({} and {}); {fix}",
                    point_text(&t.params, &points[j]),
                    point_text(&t.params, point)
                )
            });
            return;
        }
        seen.insert(label, i);
    }
}
