//! `tessera plot compare A.db B.db`: per-problem speedup of B's winners over A's.
//!
//! Keys are matched exactly (device fingerprint, template name and source hash, problem key);
//! the speedup is A's median time over B's, drawn as horizontal bars (green: B faster, red: B
//! slower) against a 1.0 reference line, fastest-improved first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tessera_cache::{WinnerKey, WinnerRow};

use super::{
    bullet_list, device_matches, drawing, fit, header, header_height, num, open_existing,
    plottable, save, text, width_of, Figure, OutArgs, AXIS, DARK, GREEN, GREY, LIGHT_GREY, NOTE,
    RED, TICKS,
};
use crate::usage::usage;

#[derive(clap::Args)]
pub struct Args {
    /// The baseline cache.
    #[arg(value_name = "A.db")]
    a: PathBuf,
    /// The cache compared with it: bars show how much faster B's winners are.
    #[arg(value_name = "B.db")]
    b: PathBuf,
    /// Only devices whose description contains this (name, arch, driver, ...).
    #[arg(long, value_name = "SUBSTR")]
    device: Option<String>,
    #[command(flatten)]
    out: OutArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let out = args.out.check()?;
    let a = winners(&args.a, args.device.as_deref())?;
    let b = winners(&args.b, args.device.as_deref())?;
    let mut rows: Vec<Row> = Vec::new();
    for (key, wa) in &a {
        // A speedup no axis can show (from extreme medians) is left out.
        if let Some(wb) = b
            .get(key)
            .filter(|wb| plottable(wa.median_ms / wb.median_ms).is_some())
        {
            rows.push(Row {
                key: key.clone(),
                speedup: wa.median_ms / wb.median_ms,
                a_ms: wa.median_ms,
                b_ms: wb.median_ms,
            });
        }
    }
    if rows.is_empty() {
        let list = |m: &BTreeMap<WinnerKey, WinnerRow>| {
            bullet_list(
                m.keys()
                    .map(|k| format!("{} | {} | {}", k.device.name, k.template, k.problem_key)),
            )
        };
        return Err(usage(format!(
            "the caches share no winner key (device, template version, problem); {} has:{}\n{} has:{}",
            args.a.display(),
            list(&a),
            args.b.display(),
            list(&b)
        )));
    }
    let only_a = a.len() - rows.len();
    let only_b = b.len() - rows.len();
    let fig = CompareFigure::new(rows, &args, only_a, only_b);
    save(&fig, &out)
}

/// The winners of one cache on the selected devices, by key.
fn winners(
    path: &std::path::Path,
    device: Option<&str>,
) -> anyhow::Result<BTreeMap<WinnerKey, WinnerRow>> {
    let cache = open_existing(path)?;
    let all = cache.list_winners()?;
    if all.is_empty() {
        return Err(usage(format!(
            "cache {} has no winners yet; run `tessera tune` to completion first",
            path.display()
        )));
    }
    let devices: BTreeSet<String> = all.iter().map(|w| w.device.to_string()).collect();
    let mine: BTreeMap<WinnerKey, WinnerRow> = all
        .into_iter()
        .filter(|w| device_matches(&w.device, device))
        .map(|w| (w.key(), w))
        .collect();
    if mine.is_empty() {
        return Err(usage(format!(
            "no device matching {:?} has winners in {}; devices that do:{}",
            device.unwrap_or(""),
            path.display(),
            bullet_list(devices)
        )));
    }
    Ok(mine)
}

struct Row {
    key: WinnerKey,
    speedup: f64,
    a_ms: f64,
    b_ms: f64,
}

struct CompareFigure {
    title: String,
    lines: Vec<String>,
    /// Fastest-improved first.
    rows: Vec<Row>,
    labels: Vec<String>,
}

impl CompareFigure {
    fn new(mut rows: Vec<Row>, args: &Args, only_a: usize, only_b: usize) -> CompareFigure {
        rows.sort_by(|x, y| {
            y.speedup
                .total_cmp(&x.speedup)
                .then_with(|| x.key.cmp(&y.key))
        });
        let devices: BTreeSet<&str> = rows.iter().map(|r| r.key.device.name.as_str()).collect();
        let fingerprints: BTreeSet<String> =
            rows.iter().map(|r| r.key.device.to_string()).collect();
        let templates: BTreeSet<&str> = rows.iter().map(|r| r.key.template.name.as_str()).collect();
        let labels = rows
            .iter()
            .map(|r| {
                let mut l = r.key.problem_key.clone();
                if templates.len() > 1 && !l.starts_with(&r.key.template.name) {
                    l = format!("{}: {l}", r.key.template.name);
                }
                if fingerprints.len() > 1 {
                    l = format!("{l} [{}, {}]", r.key.device.name, r.key.device.arch);
                }
                l
            })
            .collect();
        let geomean = (rows.iter().map(|r| r.speedup.ln()).sum::<f64>() / rows.len() as f64).exp();
        let faster = rows
            .iter()
            .filter(|r| Change::of(r.speedup) == Change::Faster)
            .count();
        let slower = rows
            .iter()
            .filter(|r| Change::of(r.speedup) == Change::Slower)
            .count();
        let device_line = if fingerprints.len() == 1 {
            fingerprints.iter().next().cloned().unwrap_or_default()
        } else {
            format!(
                "{} devices: {}",
                fingerprints.len(),
                devices.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let mut counts = format!(
            "{} shared keys: B faster on {faster}, slower on {slower}, within ±0.5% on {} · geometric mean {}×",
            rows.len(),
            rows.len() - faster - slower,
            num(geomean)
        );
        if only_a + only_b > 0 {
            counts.push_str(&format!(" · {only_a} only in A, {only_b} only in B"));
        }
        CompareFigure {
            title: "Speedup of B's winners over A's (A median time / B median time)".into(),
            lines: vec![
                format!("A: {}   B: {}", args.a.display(), args.b.display()),
                device_line,
                counts,
            ],
            rows,
            labels,
        }
    }
}

/// How B's time compares with A's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Faster,
    Same,
    Slower,
}

impl Change {
    /// Within ±0.5% counts as the same.
    fn of(speedup: f64) -> Change {
        if speedup > 1.005 {
            Change::Faster
        } else if speedup < 1.0 / 1.005 {
            Change::Slower
        } else {
            Change::Same
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Change::Faster => GREEN,
            Change::Same => GREY,
            Change::Slower => RED,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Change::Faster => "B faster",
            Change::Same => "within ±0.5%",
            Change::Slower => "B slower",
        }
    }
}

/// Pixels per bar.
const ROW: u32 = 28;

/// The label at the end of a bar: `1.25×  (0.5 → 0.4 ms)`.
fn value_label(r: &Row) -> String {
    format!("{:.2}×  ({} → {} ms)", r.speedup, num(r.a_ms), num(r.b_ms))
}

impl Figure for CompareFigure {
    fn size(&self) -> (u32, u32) {
        let h = header_height(3) + 150 + ROW * self.rows.len() as u32;
        (1200, h.max(700))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let (top, rest) = root.split_vertically(header_height(self.lines.len()));
        header(&top, &self.title, &self.lines)?;
        // The legend goes in a strip under the chart, where it can cover no bar or label.
        let (body, legend) = rest.split_vertically(rest.dim_in_pixel().1 - 34);
        let n = self.rows.len() as u32;
        let tick_style = text(TICKS, &DARK);
        let label_px = self
            .labels
            .iter()
            .map(|l| width_of(&body, l, &tick_style))
            .max()
            .unwrap_or(100)
            .clamp(100, 560)
            + 14;
        let max = self.rows.iter().map(|r| r.speedup).fold(1.0, f64::max);
        // Room on the right of every bar (and of the 1.0 line) for its whole value label: the
        // axis reaches far enough that no label runs past the plotting area.
        let note = text(NOTE, &DARK);
        let plot_px = f64::from(
            body.dim_in_pixel()
                .0
                .saturating_sub(label_px + 10 + 30 + 4)
                .max(200),
        );
        let x_max = self
            .rows
            .iter()
            .map(|r| {
                let label_w = f64::from(width_of(&body, &value_label(r), &note)) + 12.0;
                let room = (plot_px - label_w).max(plot_px * 0.25);
                r.speedup.max(1.0) * plot_px / room
            })
            .fold((max * 1.05).max(1.3), f64::max);
        let mut chart = ChartBuilder::on(&body)
            .margin_left(10)
            .margin_right(30)
            .margin_top(10)
            .margin_bottom(10)
            .x_label_area_size(55)
            .y_label_area_size(label_px)
            .build_cartesian_2d(0f64..x_max, (0u32..n - 1).into_segmented())
            .map_err(drawing)?;
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|l| fit(&body, l, &tick_style, label_px - 14))
            .collect();
        let label_of = move |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) if *i < n => labels[(n - 1 - i) as usize].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .bold_line_style(LIGHT_GREY)
            .light_line_style(TRANSPARENT)
            .x_desc("speedup of B over A (×, higher is better)")
            .axis_desc_style(text(AXIS, &BLACK))
            .label_style(tick_style.clone())
            .y_labels(n as usize)
            .y_label_formatter(&label_of)
            .x_label_formatter(&|v| format!("{}×", num(*v)))
            .draw()
            .map_err(drawing)?;

        let row_px = chart.plotting_area().dim_in_pixel().1 / n.max(1);
        let margin = (row_px / 5).clamp(2, 14);
        for change in [Change::Faster, Change::Same, Change::Slower] {
            let color = change.color();
            let bars: Vec<_> = self
                .rows
                .iter()
                .enumerate()
                .filter(|(_, r)| Change::of(r.speedup) == change)
                .map(|(i, r)| {
                    let y = n - 1 - i as u32;
                    let mut rect = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(y)),
                            (r.speedup, SegmentValue::Exact(y + 1)),
                        ],
                        color.filled(),
                    );
                    rect.set_margin(margin, margin, 0, 0);
                    rect
                })
                .collect();
            if bars.is_empty() {
                continue;
            }
            chart
                .draw_series(bars)
                .map_err(drawing)?
                .label(change.label())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled())
                });
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
                BLACK.stroke_width(2),
            )))
            .map_err(drawing)?;
        // Value labels at the end of each bar.
        chart
            .draw_series(self.rows.iter().enumerate().map(|(i, r)| {
                let y = n - 1 - i as u32;
                // Right of the bar, and of the 1.0 line when the bar ends before it.
                let x = r.speedup.max(1.0);
                EmptyElement::at((x, SegmentValue::CenterOf(y)))
                    + Text::new(
                        value_label(r),
                        (8, 0),
                        text(NOTE, &DARK).pos(Pos::new(HPos::Left, VPos::Center)),
                    )
            }))
            .map_err(drawing)?;
        // The legend: one row of entries under the x axis label, aligned with the bars.
        let mut x = label_px as i32 + 10;
        let y = 8;
        let style = text(TICKS, &BLACK);
        for change in [Change::Faster, Change::Same, Change::Slower] {
            if !self.rows.iter().any(|r| Change::of(r.speedup) == change) {
                continue;
            }
            legend
                .draw(&Rectangle::new(
                    [(x, y + 2), (x + 16, y + 14)],
                    change.color().filled(),
                ))
                .map_err(drawing)?;
            legend
                .draw(&Text::new(change.label(), (x + 22, y), style.clone()))
                .map_err(drawing)?;
            x += 22 + width_of(&legend, change.label(), &style) as i32 + 28;
        }
        legend
            .draw(&PathElement::new(
                vec![(x + 8, y - 1), (x + 8, y + 17)],
                BLACK.stroke_width(2),
            ))
            .map_err(drawing)?;
        legend
            .draw(&Text::new("1.0× (same speed)", (x + 22, y), style.clone()))
            .map_err(drawing)?;
        Ok(())
    }
}
