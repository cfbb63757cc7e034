//! `tessera plot sweep`: every candidate of one problem on one device, by throughput.
//!
//! Candidates that ran (`ok`) are bars sorted by throughput, fastest first, with their
//! p10–p90 range as whiskers; the winner is highlighted and labelled. Candidates that did not
//! (rejected, compile errors, wrong results, ...) are marked at zero after them, one marker
//! shape and colour per status, and listed with their reasons in a side panel.
//!
//! The legend is a strip under the chart (rows that wrap), outside the plotting area, and the
//! winner's label is placed in pixels from its measured width inside the plotting area (right
//! of its leader line, or left of it near the right edge), so the two never overlap
//! ([`Placed`] records where both went; the tests check it, and the drawn SVG).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::bail;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tessera_cache::{Explanation, ResultRow, Status, ThroughputUnit, Timing};

use super::{
    bullet_list, common_affixes, device_matches, drawing, fit, header, header_height, num,
    open_existing, plottable, save, shorten, text, tflops, width_of, work_of, wrap, OutArgs, AXIS,
    BLUE, BROWN, DARK, GREY, LIGHT_GREY, NOTE, ORANGE, PINK, PURPLE, RED, TICKS,
};
use crate::settings;
use crate::usage::usage;

#[derive(clap::Args)]
pub struct Args {
    /// The problem: a substring of its key, e.g. `m=384 n=768 k=768` (an exact key wins).
    #[arg(long, value_name = "KEY")]
    problem: String,
    /// Only devices whose description contains this (name, arch, driver, ...).
    #[arg(long, value_name = "SUBSTR")]
    device: Option<String>,
    /// Only this template: a name, or `name@hash` (a hash prefix is enough).
    #[arg(long, value_name = "NAME[@HASH]")]
    template: Option<String>,
    /// The cache file (default: $TESSERA_CACHE, else ~/.cache/tessera/tune.db).
    #[arg(long, value_name = "PATH")]
    cache: Option<PathBuf>,
    #[command(flatten)]
    out: OutArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let out = args.out.check()?;
    let cache = open_existing(&settings::cache_path(args.cache)?)?;
    let key = select(
        &cache,
        &args.problem,
        args.device.as_deref(),
        args.template.as_deref(),
    )?;
    let fig = SweepFigure::new(&key)?;
    save(&fig, &out)
}

/// The one key (device, template version, problem) the filters select, or a usage error that
/// lists the choices.
fn select(
    cache: &tessera_cache::Cache,
    problem: &str,
    device: Option<&str>,
    template: Option<&str>,
) -> anyhow::Result<Explanation> {
    let mut found: Vec<Explanation> = cache
        .why(problem)?
        .into_iter()
        .filter(|e| !e.candidates.is_empty())
        .collect();
    if found.is_empty() {
        let keys: BTreeSet<String> = cache
            .why("")?
            .into_iter()
            .filter(|e| !e.candidates.is_empty())
            .map(|e| e.key.problem_key)
            .collect();
        return Err(usage(format!(
            "no problem in the cache matches {problem:?}; problems with results:{}",
            bullet_list(keys)
        )));
    }
    if found.iter().any(|e| e.key.problem_key == problem) {
        found.retain(|e| e.key.problem_key == problem);
    }
    let on_any_device: Vec<String> = found.iter().map(|e| e.key.device.to_string()).collect();
    found.retain(|e| device_matches(&e.key.device, device));
    if found.is_empty() {
        let devices: BTreeSet<String> = on_any_device.into_iter().collect();
        return Err(usage(format!(
            "no device matching {:?} has results for {problem:?}; devices that do:{}",
            device.unwrap_or(""),
            bullet_list(devices)
        )));
    }
    let problems: BTreeSet<&str> = found.iter().map(|e| e.key.problem_key.as_str()).collect();
    if problems.len() > 1 {
        return Err(usage(format!(
            "{problem:?} matches {} problems; give more of the key, one of:{}",
            problems.len(),
            bullet_list(problems.iter().map(|p| p.to_string()))
        )));
    }
    let devices: BTreeSet<String> = found.iter().map(|e| e.key.device.to_string()).collect();
    if devices.len() > 1 {
        return Err(usage(format!(
            "{} devices have results for this problem; pick one with --device:{}",
            devices.len(),
            bullet_list(devices)
        )));
    }
    if let Some(t) = template {
        let (name, hash) = t.split_once('@').unwrap_or((t, ""));
        let versions: Vec<String> = found.iter().map(|e| e.key.template.to_string()).collect();
        found.retain(|e| {
            e.key.template.name == name && e.key.template.source_hash.starts_with(hash)
        });
        if found.is_empty() {
            return Err(usage(format!(
                "no template version matching {t:?} has results here; these do:{}",
                bullet_list(versions)
            )));
        }
    }
    if found.len() > 1 {
        return Err(usage(format!(
            "several template versions have results for this problem; pick one with --template:{}",
            bullet_list(found.iter().map(|e| e.key.template.to_string()))
        )));
    }
    Ok(found.remove(0))
}

/// One candidate as drawn.
struct Bar {
    /// The kernel name without the parts every candidate shares.
    label: String,
    status: Status,
    /// Throughput (0 when not `ok`).
    value: f64,
    /// Throughput at the p90 and p10 times.
    range: Option<(f64, f64)>,
    reason: String,
}

struct SweepFigure {
    title: String,
    lines: Vec<String>,
    unit: &'static str,
    /// `ok` candidates, fastest first.
    ok: Vec<Bar>,
    /// The others, by status and name.
    not_ok: Vec<Bar>,
    /// Index into `ok` of the winner.
    winner: Option<usize>,
}

impl SweepFigure {
    fn new(e: &Explanation) -> anyhow::Result<SweepFigure> {
        let names: Vec<&str> = e
            .candidates
            .iter()
            .map(|r| r.kernel_name.as_str())
            .collect();
        let affixes = common_affixes(&names);
        let work = work_of(&e.candidates[0].problem);
        let stored = |r: &ResultRow, unit| r.throughput.filter(|t| t.unit == unit).map(|t| t.value);
        let ok_rows: Vec<&ResultRow> = e.candidates.iter().filter(|r| r.is_eligible()).collect();
        #[allow(clippy::type_complexity)]
        let (unit, value): (&'static str, Box<dyn Fn(&ResultRow) -> Option<f64>>) =
            if let Some(w) = work.filter(|w| !w.memory_bound) {
                (
                    "TFLOP/s",
                    Box::new(move |r: &ResultRow| {
                        stored(r, ThroughputUnit::Tflops)
                            .or_else(|| r.timing.map(|t| tflops(w.flops, t.median_ms)))
                    }),
                )
            } else if ok_rows
                .iter()
                .all(|r| stored(r, ThroughputUnit::Gbs).is_some())
                && !ok_rows.is_empty()
            {
                ("GB/s", Box::new(move |r| stored(r, ThroughputUnit::Gbs)))
            } else if ok_rows
                .iter()
                .all(|r| stored(r, ThroughputUnit::Tflops).is_some())
            {
                (
                    "TFLOP/s",
                    Box::new(move |r| stored(r, ThroughputUnit::Tflops)),
                )
            } else {
                bail!(
                    "the results for {} carry no throughput and its problem is not one this \
                     tessera can count FLOPs for",
                    e.key.problem_key
                );
            };
        let winner_name = e
            .winner
            .as_ref()
            .map(|w| w.kernel_name.clone())
            .or_else(|| e.policy_choice().map(|r| r.kernel_name.clone()));
        let mut ok: Vec<(Bar, bool, f64)> = Vec::new();
        let mut not_ok = Vec::new();
        for r in &e.candidates {
            let label = shorten(&r.kernel_name, affixes);
            match (r.is_eligible(), value(r), r.timing) {
                (true, Some(v), Some(t)) if plottable(v).is_some() => ok.push((
                    Bar {
                        label,
                        status: r.status,
                        value: v,
                        range: spread(v, &t),
                        reason: String::new(),
                    },
                    winner_name.as_deref() == Some(r.kernel_name.as_str()),
                    t.median_ms,
                )),
                (true, Some(v), Some(_)) => not_ok.push(Bar {
                    label,
                    status: r.status,
                    value: 0.0,
                    range: None,
                    reason: format!("throughput {v:e} {unit} cannot be plotted"),
                }),
                _ => not_ok.push(Bar {
                    label,
                    status: r.status,
                    value: 0.0,
                    range: None,
                    reason: r.reason.clone(),
                }),
            }
        }
        ok.sort_by(|a, b| b.0.value.total_cmp(&a.0.value));
        not_ok.sort_by(|a, b| (a.status, &a.label).cmp(&(b.status, &b.label)));
        let winner = ok.iter().position(|(_, w, _)| *w);
        let winner_ms = winner.map_or(0.0, |i| ok[i].2);
        let device = &e.key.device;
        let mut lines = vec![format!("{device} · template {}", e.key.template)];
        let mut third = format!(
            "{} candidates: {} ok, {} not ok",
            e.candidates.len(),
            ok.len(),
            not_ok.len()
        );
        if let Some(i) = winner {
            let w = &ok[i].0;
            third.push_str(&format!(
                " · winner {} at {} {unit} ({} ms)",
                winner_name.as_deref().unwrap_or(&w.label),
                num(w.value),
                num(winner_ms)
            ));
        }
        lines.push(third);
        Ok(SweepFigure {
            title: format!("Sweep: {}", e.key.problem_key),
            lines,
            unit,
            ok: ok.into_iter().map(|(b, _, _)| b).collect(),
            not_ok,
            winner,
        })
    }

    fn statuses(&self) -> BTreeMap<Status, usize> {
        let mut m = BTreeMap::new();
        for b in &self.not_ok {
            *m.entry(b.status).or_insert(0) += 1;
        }
        m
    }
}

/// Colour of a status that is not `ok`.
/// The p10–p90 throughput range of a bar of throughput `v` with timing `t`, when both ends
/// are plottable (a p10 far below a huge median would otherwise reach infinity).
fn spread(v: f64, t: &Timing) -> Option<(f64, f64)> {
    let lo = plottable(v * t.median_ms / t.p90_ms)?;
    let hi = plottable(v * t.median_ms / t.p10_ms)?;
    Some((lo, hi))
}

fn status_color(s: Status) -> RGBColor {
    match s {
        Status::Ok => BLUE,
        Status::Rejected | Status::Pruned => GREY,
        Status::CompileError => RED,
        Status::LaunchError => BROWN,
        Status::WrongResult => PURPLE,
        Status::Timeout => PINK,
        Status::SkippedSlow => DARK,
    }
}

const PANEL: u32 = 340;

/// Space of the y axis labels and the chart's left margin: where the plotting area starts in
/// the chart's column (the legend is aligned with it).
const Y_LABELS: u32 = 75;
const CHART_LEFT: u32 = 10;

/// A rectangle in pixels of the whole figure: `x0..x1` × `y0..y1` (end-exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PxBox {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl PxBox {
    fn intersects(&self, o: &PxBox) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    fn contains(&self, o: &PxBox) -> bool {
        self.x0 <= o.x0 && o.x1 <= self.x1 && self.y0 <= o.y0 && o.y1 <= self.y1
    }

    /// The box of a drawing area, in the figure's pixels.
    fn of_area<DB: DrawingBackend, C: CoordTranslate>(a: &DrawingArea<DB, C>) -> PxBox {
        let (x, y) = a.get_pixel_range();
        PxBox {
            x0: x.start,
            y0: y.start,
            x1: x.end,
            y1: y.end,
        }
    }
}

/// What a legend entry shows before its label.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Bar(RGBColor),
    Whisker,
    Cross(RGBColor),
}

/// Legend geometry: a swatch and a gap before each label, a gap between entries, rows of
/// this height (entries wrap to a new row rather than leave the strip), padding above.
const SWATCH_PX: i32 = 22;
const ENTRY_GAP: i32 = 28;
const LEGEND_ROW: i32 = 24;
const LEGEND_PAD: i32 = 8;

/// The boxes of legend entries whose labels are `widths` pixels wide, laid out in rows from
/// `left` within a strip `width` pixels wide, relative to the strip's top-left corner. An
/// entry wider than a row gets a row of its own.
fn legend_layout(widths: &[u32], left: i32, width: u32) -> Vec<PxBox> {
    let right = i32::try_from(width).unwrap_or(i32::MAX);
    let (mut x, mut y) = (left, LEGEND_PAD);
    let mut out = Vec::with_capacity(widths.len());
    for &w in widths {
        let w = SWATCH_PX + i32::try_from(w).unwrap_or(i32::MAX / 2);
        if x > left && x + w > right {
            x = left;
            y += LEGEND_ROW;
        }
        out.push(PxBox {
            x0: x,
            y0: y,
            x1: x + w,
            y1: y + LEGEND_ROW - 4,
        });
        x += w + ENTRY_GAP;
    }
    out
}

/// Height of the legend strip under the chart for entry boxes laid out by [`legend_layout`].
fn legend_height(boxes: &[PxBox]) -> u32 {
    let bottom = boxes.iter().map(|b| b.y1).max().unwrap_or(0);
    u32::try_from(bottom + LEGEND_PAD).unwrap_or(0)
}

/// Where the winner's label goes: a `w`×`h` box whose bottom is at `bottom` (the top of the
/// leader line at `x`), starting just right of the line when it fits in `plot`, else ending
/// just left of it; kept inside `plot` either way (the label is fitted to the plot's width
/// first).
fn winner_label_box(plot: PxBox, x: i32, bottom: i32, w: i32, h: i32) -> PxBox {
    let x0 = if x + 4 + w <= plot.x1 {
        x + 4
    } else {
        (x - 4 - w).max(plot.x0)
    };
    let y1 = bottom.min(plot.y1).max(plot.y0 + h);
    PxBox {
        x0,
        y0: y1 - h,
        x1: x0 + w,
        y1,
    }
}

/// Where the parts that must not overlap were drawn, in the figure's pixels.
#[derive(Debug, Clone)]
struct Placed {
    /// The plotting area (inside the axes).
    plot: PxBox,
    /// Every legend entry (swatch and label).
    legend: Vec<PxBox>,
    /// The winner's label, when there is a winner.
    winner_label: Option<PxBox>,
}

impl Placed {
    /// The legend lies outside the plotting area, so neither the winner's label nor any bar
    /// can be under it; the label lies inside the plotting area.
    fn is_clear(&self) -> bool {
        self.legend.iter().all(|l| {
            !l.intersects(&self.plot) && self.winner_label.is_none_or(|w| !w.intersects(l))
        }) && self.winner_label.is_none_or(|w| self.plot.contains(&w))
    }
}

impl super::Figure for SweepFigure {
    fn size(&self) -> (u32, u32) {
        (1200, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let placed = self.draw_placed(root)?;
        debug_assert!(placed.is_clear(), "sweep plot parts overlap: {placed:?}");
        Ok(())
    }
}

impl SweepFigure {
    /// The legend's entries: what the chart shows, in drawing order.
    fn legend_entries(&self) -> Vec<(Swatch, String)> {
        let mut v = vec![(Swatch::Bar(BLUE), format!("ok ({})", self.ok.len()))];
        if self.winner.is_some() {
            v.push((Swatch::Bar(ORANGE), "winner".into()));
        }
        if self.ok.len() <= 120 && self.ok.iter().any(|b| b.range.is_some()) {
            v.push((Swatch::Whisker, "p10–p90 spread".into()));
        }
        for (status, count) in self.statuses() {
            v.push((
                Swatch::Cross(status_color(status)),
                format!("{status} ({count}), at 0"),
            ));
        }
        v
    }

    /// Draws the figure and says where its legend and winner label went. The legend is a
    /// strip under the chart, outside the plotting area (as in the compare plot), and the
    /// winner's label is placed from the measured label width inside the plotting area, so
    /// the two can never overlap, however many entries or long a kernel name.
    fn draw_placed<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> anyhow::Result<Placed> {
        let (top, body) = root.split_vertically(header_height(self.lines.len()));
        header(&top, &self.title, &self.lines)?;
        let (column, panel) = if self.not_ok.is_empty() {
            (body, None)
        } else {
            let w = body.dim_in_pixel().0;
            let (c, p) = body.split_horizontally(w - PANEL);
            (c, Some(p))
        };
        let legend_style = text(TICKS, &BLACK);
        let left = CHART_LEFT + Y_LABELS;
        let strip_w = column.dim_in_pixel().0;
        // Each label fits a row of the strip.
        let room = strip_w.saturating_sub(left + SWATCH_PX as u32 + 4);
        let entries: Vec<(Swatch, String)> = self
            .legend_entries()
            .into_iter()
            .map(|(sw, l)| (sw, fit(&column, &l, &legend_style, room)))
            .collect();
        let widths: Vec<u32> = entries
            .iter()
            .map(|(_, l)| width_of(&column, l, &legend_style))
            .collect();
        let boxes = legend_layout(&widths, left as i32, strip_w);
        let h = column.dim_in_pixel().1;
        let (chart_area, legend) = column.split_vertically(h.saturating_sub(legend_height(&boxes)));
        let n = self.ok.len() + self.not_ok.len();
        let top_value = self
            .ok
            .iter()
            .map(|b| b.range.map_or(b.value, |r| r.1))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let y_max = top_value * 1.18;
        let y_min = -y_max * 0.03;
        let mut chart = ChartBuilder::on(&chart_area)
            .margin_left(CHART_LEFT)
            .margin_right(20)
            .margin_top(10)
            .margin_bottom(4)
            .x_label_area_size(55)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(0.5f64..n as f64 + 0.5, y_min..y_max)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(LIGHT_GREY)
            .light_line_style(TRANSPARENT)
            .x_desc("candidates, fastest first (rank)")
            .y_desc(format!("throughput ({})", self.unit))
            .axis_desc_style(text(AXIS, &BLACK))
            .label_style(text(TICKS, &DARK))
            .x_labels(n.clamp(2, 12))
            .x_label_formatter(&|v| {
                if v.fract().abs() < 1e-9 && *v >= 1.0 {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| if *v < 0.0 { String::new() } else { num(*v) })
            .draw()
            .map_err(drawing)?;
        let plot = PxBox::of_area(chart.plotting_area());

        let half: f64 = if n > 150 { 0.5 } else { 0.4 };
        // The winner's bar is at least 6 pixels wide however many candidates there are.
        let px_per_rank = chart.plotting_area().dim_in_pixel().0 as f64 / n.max(1) as f64;
        let winner_half = half.max(3.0 / px_per_rank);
        let bar = |i: usize, v: f64| {
            Rectangle::new(
                [(i as f64 + 1.0 - half, 0.0), (i as f64 + 1.0 + half, v)],
                BLUE.filled(),
            )
        };
        chart
            .draw_series(
                self.ok
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != self.winner)
                    .map(|(i, b)| bar(i, b.value)),
            )
            .map_err(drawing)?;
        let mut winner_label = None;
        if let Some(w) = self.winner {
            let b = &self.ok[w];
            let x = w as f64 + 1.0;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - winner_half, 0.0), (x + winner_half, b.value)],
                    ORANGE.filled(),
                )))
                .map_err(drawing)?;
            // Label above every bar (they may all be about as tall), with a leader line
            // down to the winner's bar; right of the line, or left of it when it would run
            // past the plotting area.
            let label_y = top_value * 1.09;
            let bar_top = b.range.map_or(b.value, |r| r.1);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, bar_top), (x, label_y)],
                    ORANGE.stroke_width(2),
                )))
                .map_err(drawing)?;
            let style = text(TICKS, &BLACK).pos(Pos::new(HPos::Left, VPos::Top));
            let label = fit(
                root,
                &format!("winner: {} — {} {}", b.label, num(b.value), self.unit),
                &style,
                u32::try_from(plot.x1 - plot.x0 - 8).unwrap_or(0),
            );
            let (lw, lh) = root.estimate_text_size(&label, &style).map_err(drawing)?;
            let (px, py) = chart.backend_coord(&(x, label_y));
            let placed = winner_label_box(
                plot,
                px,
                py - 2,
                i32::try_from(lw).unwrap_or(i32::MAX / 2),
                i32::try_from(lh).unwrap_or(i32::MAX / 2),
            );
            root.draw(&Text::new(label, (placed.x0, placed.y0), style))
                .map_err(drawing)?;
            winner_label = Some(placed);
        }
        if self.ok.len() <= 120 {
            chart
                .draw_series(self.ok.iter().enumerate().filter_map(|(i, b)| {
                    let (lo, hi) = b.range?;
                    let x = i as f64 + 1.0;
                    Some(PathElement::new(
                        vec![(x, lo), (x, hi)],
                        BLACK.stroke_width(1),
                    ))
                }))
                .map_err(drawing)?;
        }
        if !self.not_ok.is_empty() {
            let split = self.ok.len() as f64 + 0.5;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(split, 0.0), (split, y_max)],
                    GREY.stroke_width(1),
                )))
                .map_err(drawing)?;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((split, top_value * 0.06))
                        + Text::new(
                            "not ok →",
                            (6, 0),
                            text(NOTE, &GREY).pos(Pos::new(HPos::Left, VPos::Bottom)),
                        ),
                ))
                .map_err(drawing)?;
            for status in self.statuses().into_keys() {
                let color = status_color(status);
                let first = self.ok.len();
                chart
                    .draw_series(
                        self.not_ok
                            .iter()
                            .enumerate()
                            .filter(|(_, b)| b.status == status)
                            .map(|(i, _)| {
                                Cross::new(
                                    ((first + i) as f64 + 1.0, 0.0),
                                    5,
                                    color.stroke_width(2),
                                )
                            }),
                    )
                    .map_err(drawing)?;
            }
        }

        // The legend strip, under the chart.
        let (bx, by) = legend.get_base_pixel();
        let mut legend_boxes = Vec::with_capacity(boxes.len());
        for ((swatch, label), b) in entries.iter().zip(&boxes) {
            let mid = (b.y0 + b.y1) / 2;
            match *swatch {
                Swatch::Bar(color) => legend.draw(&Rectangle::new(
                    [(b.x0, mid - 6), (b.x0 + 16, mid + 6)],
                    color.filled(),
                )),
                Swatch::Whisker => legend.draw(&PathElement::new(
                    vec![(b.x0 + 8, mid - 7), (b.x0 + 8, mid + 7)],
                    BLACK.stroke_width(1),
                )),
                Swatch::Cross(color) => {
                    legend.draw(&Cross::new((b.x0 + 8, mid), 5, color.stroke_width(2)))
                }
            }
            .map_err(drawing)?;
            legend
                .draw(&Text::new(
                    label.as_str(),
                    (b.x0 + SWATCH_PX, mid),
                    legend_style.pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(drawing)?;
            legend_boxes.push(PxBox {
                x0: b.x0 + bx,
                y0: b.y0 + by,
                x1: b.x1 + bx,
                y1: b.y1 + by,
            });
        }

        if let Some(panel) = panel {
            self.draw_panel(&panel)?;
        }
        Ok(Placed {
            plot,
            legend: legend_boxes,
            winner_label,
        })
    }
}

impl SweepFigure {
    /// The side panel: counts by status, then the candidates that are not `ok` with reasons.
    fn draw_panel<DB: DrawingBackend>(&self, panel: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let (w, h) = panel.dim_in_pixel();
        let width = w - 16;
        let line = 20;
        let put = |s: &str, y: i32, size: u32, color: &RGBColor, x: i32| {
            let style = text(size, color);
            panel
                .draw(&Text::new(
                    fit(panel, s, &style, width - x as u32),
                    (x, y),
                    style.clone(),
                ))
                .map_err(drawing)
        };
        let mut y = 14;
        let total = self.not_ok.len() + self.ok.len();
        put(
            &format!("Not ok: {} of {total}", self.not_ok.len()),
            y,
            AXIS,
            &BLACK,
            4,
        )?;
        y += line + 8;
        for (status, count) in self.statuses() {
            let color = status_color(status);
            panel
                .draw(&Cross::new((12, y + 8), 5, color.stroke_width(2)))
                .map_err(drawing)?;
            put(&format!("{status}: {count}"), y, TICKS, &BLACK, 26)?;
            y += line;
        }
        y += 12;
        // Candidates that failed the same way are one entry: status, count, an example, the
        // reason.
        let mut groups: Vec<(Status, &str, Vec<&str>)> = Vec::new();
        for b in &self.not_ok {
            match groups
                .iter_mut()
                .find(|(s, r, _)| *s == b.status && *r == b.reason)
            {
                Some(g) => g.2.push(&b.label),
                None => groups.push((b.status, &b.reason, vec![&b.label])),
            }
        }
        let reason_style = text(NOTE - 1, &GREY);
        let bottom = h as i32 - 30;
        let mut shown = 0;
        for (status, reason, labels) in &groups {
            let reasons = wrap(panel, reason, &reason_style, width - 14, 2);
            let need = line + 17 * reasons.len() as i32 + 6;
            if y + need > bottom {
                break;
            }
            let head = match labels.len() {
                1 => format!("{}  ({status})", labels[0]),
                k => format!("{k}× {status}, e.g. {}", labels[0]),
            };
            put(&head, y, NOTE, &BLACK, 4)?;
            y += line;
            for r in reasons {
                panel
                    .draw(&Text::new(r, (14, y), reason_style.clone()))
                    .map_err(drawing)?;
                y += 17;
            }
            y += 6;
            shown += labels.len();
        }
        if shown < self.not_ok.len() {
            put(
                &format!(
                    "… and {} more: see tessera cache why",
                    self.not_ok.len() - shown
                ),
                y,
                NOTE,
                &GREY,
                4,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{draw_to, register_fonts, Figure, Format};
    use super::*;
    use std::time::Duration;
    use tessera_cache::{
        DeviceFingerprint, ProblemRecord, Provenance, TemplateKey, Throughput, Timestamp, WinnerKey,
    };
    use tessera_dsl::{GemmProblem, Problem};

    /// Rows as an old or tampered cache may hold them: the cache's bounds are bypassed.
    fn row(kernel: &str, median: f64, p10: f64, p90: f64, stored: Option<f64>) -> ResultRow {
        let p = Problem::Gemm(GemmProblem::new(384, 768, 768));
        ResultRow {
            device: DeviceFingerprint {
                name: "NVIDIA H100 80GB HBM3".into(),
                arch: "sm_90a".into(),
                sm_count: 132,
                driver: "580.65.06".into(),
                toolchain: "nvrtc 13.0".into(),
                simulated: false,
            },
            template: TemplateKey::new("gemm", "h"),
            problem: ProblemRecord::new(p.key(), "gemm", serde_json::to_string(&p).unwrap()),
            kernel_name: kernel.into(),
            config: "a=1".into(),
            config_json: "{}".into(),
            guards_json: "{}".into(),
            status: Status::Ok,
            reason: String::new(),
            timing: Some(Timing {
                median_ms: median,
                p10_ms: p10,
                p90_ms: p90,
                samples: 10,
            }),
            throughput: stored.map(|value| Throughput {
                value,
                unit: ThroughputUnit::Tflops,
            }),
            max_rel_error: Some(1e-4),
            compile_s: None,
            provenance: Provenance {
                origin_host: "h".into(),
                tool_version: "tessera".into(),
                measured_at: Timestamp::now(),
            },
        }
    }

    #[test]
    fn extreme_times_neither_hang_nor_break_the_sweep_plot() {
        // Issue 14, item 4: a median of 1e307 ms (with a small p10 and a stored throughput)
        // made the y axis infinite and the plot spin forever.
        let candidates = vec![
            row("gemm_a", 0.02, 0.019, 0.021, Some(22.6)),
            row("gemm_b", 1e307, 0.001, 1e307, Some(500.0)),
            row("gemm_c", 1e308, 1e308, 1e308, None),
            row("gemm_d", f64::MAX, 1e-300, f64::MAX, Some(f64::INFINITY)),
        ];
        let e = Explanation {
            key: candidates[0].winner_key(),
            winner: None,
            candidates,
        };
        let _: &WinnerKey = &e.key;
        let fig = SweepFigure::new(&e).unwrap();
        register_fonts();
        for b in &fig.ok {
            assert!(b.value.is_finite(), "{}", b.label);
            if let Some((lo, hi)) = b.range {
                assert!(lo.is_finite() && hi.is_finite(), "{}", b.label);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sweep.svg");
        let (tx, rx) = std::sync::mpsc::channel();
        let path = out.clone();
        std::thread::spawn(move || {
            let _ = tx.send(draw_to(&fig, Format::Svg, &path).map_err(|e| e.to_string()));
        });
        let drawn = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the plot finishes in bounded time");
        drawn.unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
    }

    /// A figure of `ok` timed candidates (kernel names as given, medians in ms), `failed`
    /// candidates of distinct statuses, and the stored winner named `winner`.
    fn figure(ok: &[(&str, f64)], failed: &[Status], winner: &str) -> SweepFigure {
        let mut candidates: Vec<ResultRow> = ok
            .iter()
            .map(|&(k, ms)| row(k, ms, ms * 0.97, ms * 1.05, None))
            .collect();
        for (i, &status) in failed.iter().enumerate() {
            let mut r = row(&format!("gemm_failed_{i}"), 1.0, 1.0, 1.0, None);
            r.status = status;
            r.reason = format!("{status} for a reason that is long enough to wrap in the panel");
            r.timing = None;
            candidates.push(r);
        }
        let winner = candidates
            .iter()
            .find(|r| r.kernel_name == winner)
            .and_then(tessera_cache::WinnerRow::from_result);
        assert!(winner.is_some(), "no ok candidate {winner:?}");
        let e = Explanation {
            key: candidates[0].winner_key(),
            winner,
            candidates,
        };
        SweepFigure::new(&e).unwrap()
    }

    /// Draws `fig` as SVG in memory: where its parts went, and the SVG text.
    fn render(fig: &SweepFigure) -> (Placed, String) {
        register_fonts();
        let mut svg = String::new();
        let placed = {
            let root = SVGBackend::with_string(&mut svg, fig.size()).into_drawing_area();
            root.fill(&WHITE).unwrap();
            let placed = fig.draw_placed(&root).unwrap();
            root.present().unwrap();
            placed
        };
        (placed, svg)
    }

    /// The `(x, y, dy, text)` of every `<text>` element of an SVG written by plotters.
    fn svg_texts(svg: &str) -> Vec<(i32, i32, String, String)> {
        let attr = |tag: &str, name: &str| -> String {
            let key = format!(" {name}=\"");
            let at = tag.find(&key).map(|i| i + key.len()).unwrap();
            tag[at..].split('"').next().unwrap().to_string()
        };
        svg.split("<text")
            .skip(1)
            .map(|t| {
                let (tag, rest) = t.split_once('>').unwrap();
                let body = rest.split("</text>").next().unwrap().trim().to_string();
                (
                    attr(tag, "x").parse().unwrap(),
                    attr(tag, "y").parse().unwrap(),
                    attr(tag, "dy"),
                    body,
                )
            })
            .collect()
    }

    fn long_name(tag: &str) -> String {
        format!("gemm_f16_f32acc_{tag}_with_a_very_long_epilogue_name_bias_gelu_residual_layernorm_dropout_scale_a8")
    }

    #[test]
    fn legend_rows_wrap_inside_the_strip() {
        let boxes = legend_layout(&[60, 300, 300, 300, 900], 85, 860);
        assert_eq!(boxes[0].x0, 85);
        for b in &boxes[..4] {
            assert!(b.x1 <= 860, "{b:?}");
        }
        // An entry that would overflow its row starts the next one.
        assert_eq!(boxes[1].y0, boxes[0].y0, "{boxes:?}");
        assert!(boxes[2].y0 > boxes[0].y0 && boxes[2].x0 == 85, "{boxes:?}");
        assert_eq!(boxes[3].y0, boxes[2].y0, "{boxes:?}");
        // Wider than a row: a row of its own.
        assert!(boxes[4].y0 > boxes[3].y0 && boxes[4].x0 == 85, "{boxes:?}");
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert!(!a.intersects(b), "{a:?} {b:?}");
            }
        }
        assert!(legend_height(&boxes) as i32 >= boxes[4].y1);
    }

    #[test]
    fn the_winner_label_turns_left_at_the_right_edge_and_stays_inside() {
        let plot = PxBox {
            x0: 85,
            y0: 100,
            x1: 840,
            y1: 600,
        };
        let right = winner_label_box(plot, 100, 130, 300, 15);
        assert_eq!((right.x0, right.y1), (104, 130));
        let left = winner_label_box(plot, 830, 130, 300, 15);
        assert_eq!(left.x1, 826);
        let squeezed = winner_label_box(plot, 200, 90, 700, 15);
        assert!(plot.contains(&squeezed), "{squeezed:?}");
        for b in [right, left, squeezed] {
            assert!(plot.contains(&b), "{b:?}");
        }
    }

    #[test]
    fn the_winner_label_never_overlaps_the_legend() {
        // The issue: the label above the winner's bar ran into the legend in the upper right.
        // Winners first (the usual), last (stored winner slower than the rest: the label
        // turns left), in the middle, with long names, with and without a side panel, with a
        // legend of every status (it wraps).
        let names: Vec<String> = (0..40).map(|i| long_name(&format!("k{i:02}"))).collect();
        let many: Vec<(&str, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), 0.01 + 0.0005 * i as f64))
            .collect();
        let statuses = [
            Status::Rejected,
            Status::CompileError,
            Status::LaunchError,
            Status::WrongResult,
            Status::Timeout,
            Status::SkippedSlow,
            Status::Pruned,
        ];
        let cases = [
            figure(&many, &statuses, &names[0]),
            figure(&many, &statuses, &names[39]),
            figure(&many, &[], &names[39]),
            figure(&many, &[Status::CompileError], &names[20]),
            figure(&many[..2], &[], &names[1]),
            figure(&[("gemm_a", 0.01), ("gemm_b", 0.011)], &[], "gemm_a"),
        ];
        for (i, fig) in cases.iter().enumerate() {
            let (placed, svg) = render(fig);
            assert!(placed.is_clear(), "case {i}: {placed:?}");
            let label = placed.winner_label.expect("a winner label");
            assert!(placed.plot.contains(&label), "case {i}: {placed:?}");
            for l in &placed.legend {
                assert!(!l.intersects(&label), "case {i}: {l:?} and {label:?}");
                assert!(!l.intersects(&placed.plot), "case {i}: {l:?}");
                let (w, h) = fig.size();
                assert!(
                    l.x1 <= w as i32 && l.y1 <= h as i32,
                    "case {i}: {l:?} off the figure"
                );
            }
            // The output puts the label where the layout says.
            let texts = svg_texts(&svg);
            let drawn: Vec<_> = texts
                .iter()
                .filter(|t| t.3.starts_with("winner: "))
                .collect();
            assert_eq!(drawn.len(), 1, "case {i}");
            assert_eq!((drawn[0].0, drawn[0].1), (label.x0, label.y0), "case {i}");
            assert_eq!(drawn[0].2, "0.76em", "case {i}: anchored at its top");
            // Every legend label was drawn inside its entry's box, which the label misses.
            let legend_texts: Vec<_> = fig.legend_entries().into_iter().map(|e| e.1).collect();
            for (entry, b) in legend_texts.iter().zip(&placed.legend) {
                let t = texts
                    .iter()
                    .find(|t| &t.3 == entry)
                    .unwrap_or_else(|| panic!("case {i}: no legend text {entry:?}"));
                assert!(
                    b.x0 <= t.0 && t.0 < b.x1 && b.y0 <= t.1 && t.1 < b.y1,
                    "case {i}: {t:?} outside {b:?}"
                );
            }
        }
    }
}
