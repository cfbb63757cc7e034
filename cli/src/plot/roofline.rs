//! `tessera plot roofline`: every winner of one device as a point at (arithmetic intensity,
//! achieved TFLOP/s) on log-log axes, under the device's compute ceiling (peak f16 TFLOP/s)
//! and bandwidth slope (DRAM GB/s) from the nominal capabilities of its target.
//!
//! Points are numbered; a side panel lists each number's problem, throughput and share of the
//! roof at its intensity.

use std::collections::BTreeSet;
use std::path::PathBuf;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tessera_cache::{DeviceFingerprint, WinnerRow};
use tessera_dsl::{GpuModel, Target};

use super::{
    bullet_list, device_matches, drawing, fit, header, header_height, num, open_existing,
    plottable, save, text, tflops, width_of, work_of, wrap, Figure, OutArgs, AXIS, DARK, GREY,
    LIGHT_GREY, NOTE, PALETTE, RED, TICKS,
};
use crate::settings;
use crate::usage::usage;

#[derive(clap::Args)]
pub struct Args {
    /// Only devices whose description contains this (name, arch, driver, ...).
    #[arg(long, value_name = "SUBSTR")]
    device: Option<String>,
    /// The cache file (default: $TESSERA_CACHE, else ~/.cache/tessera/tune.db).
    #[arg(long, value_name = "PATH")]
    cache: Option<PathBuf>,
    #[command(flatten)]
    out: OutArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let out = args.out.check()?;
    let cache = open_existing(&settings::cache_path(args.cache)?)?;
    let winners = cache.list_winners()?;
    if winners.is_empty() {
        return Err(usage(format!(
            "cache {} has no winners yet; run `tessera tune` to completion first",
            cache.path().display()
        )));
    }
    let all: BTreeSet<String> = winners.iter().map(|w| w.device.to_string()).collect();
    let mine: Vec<WinnerRow> = winners
        .into_iter()
        .filter(|w| device_matches(&w.device, args.device.as_deref()))
        .collect();
    let devices: BTreeSet<&DeviceFingerprint> = mine.iter().map(|w| &w.device).collect();
    if devices.is_empty() {
        return Err(usage(format!(
            "no device matching {:?} has winners; devices that do:{}",
            args.device.as_deref().unwrap_or(""),
            bullet_list(all)
        )));
    }
    if devices.len() > 1 {
        return Err(usage(format!(
            "{} devices have winners; pick one with --device:{}",
            devices.len(),
            bullet_list(devices.iter().map(|d| d.to_string()))
        )));
    }
    let device = (*devices.iter().next().expect("one device")).clone();
    let fig = RooflineFigure::new(&device, &mine)?;
    save(&fig, &out)
}

struct Point {
    /// The problem key without the words every point's key has.
    short: String,
    template: String,
    intensity: f64,
    tflops: f64,
    /// Achieved throughput in the op's own unit: `1834 GB/s` for memory-bound ops
    /// (layernorm, softmax), `512 TFLOP/s` for the others.
    achieved: String,
}

struct Roof {
    peak_tflops: f64,
    bandwidth_gbs: f64,
    source: String,
}

impl Roof {
    /// Attainable TFLOP/s at `ai` FLOP/byte.
    fn at(&self, ai: f64) -> f64 {
        (self.bandwidth_gbs * ai / 1e3).min(self.peak_tflops)
    }

    /// Intensity where the slope meets the ceiling.
    fn ridge(&self) -> f64 {
        self.peak_tflops * 1e3 / self.bandwidth_gbs
    }
}

struct RooflineFigure {
    title: String,
    lines: Vec<String>,
    points: Vec<Point>,
    roof: Option<Roof>,
    templates: Vec<String>,
    /// The words every problem key has (left out of the list).
    common: String,
}

/// The words (space-separated) that every key contains, in the first key's order.
fn shared_words<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
    let mut all = keys.clone();
    let Some(first) = all.next() else {
        return Vec::new();
    };
    if keys.clone().count() < 2 {
        return Vec::new();
    }
    first
        .split(' ')
        .filter(|w| keys.clone().all(|k| k.split(' ').any(|x| x == *w)))
        .map(str::to_string)
        .collect()
}

impl RooflineFigure {
    fn new(device: &DeviceFingerprint, winners: &[WinnerRow]) -> anyhow::Result<RooflineFigure> {
        let mut points = Vec::new();
        let mut skipped = 0;
        for w in winners {
            let at = work_of(&w.problem).and_then(|work| {
                let intensity = plottable(work.flops / work.bytes)?;
                let tflops = plottable(tflops(work.flops, w.median_ms))?;
                let achieved = if work.memory_bound {
                    format!("{} GB/s", num(work.bytes / (w.median_ms * 1e-3) / 1e9))
                } else {
                    format!("{} TFLOP/s", num(tflops))
                };
                Some((intensity, tflops, achieved))
            });
            match at {
                Some((intensity, tflops, achieved)) => points.push(Point {
                    short: w.problem.key.clone(),
                    template: w.template.name.clone(),
                    intensity,
                    tflops,
                    achieved,
                }),
                None => skipped += 1,
            }
        }
        if points.is_empty() {
            anyhow::bail!(
                "none of the {} winners on {device} is a problem this tessera can count FLOPs for",
                winners.len()
            );
        }
        points.sort_by(|a, b| a.intensity.total_cmp(&b.intensity));
        let common = shared_words(points.iter().map(|p| p.short.as_str()));
        for p in &mut points {
            let rest: Vec<&str> = p
                .short
                .split(' ')
                .filter(|w| !common.iter().any(|c| c == w))
                .collect();
            if !rest.is_empty() {
                p.short = rest.join(" ");
            }
        }
        let common = common.join(" ");
        // the roof of the device's model (an H200 is not an H100), else its target's reference
        let model = device.arch.parse::<Target>().ok().map(|t| {
            match GpuModel::from_device_name(&device.name) {
                Some(m) if m.target() == t => m,
                _ => GpuModel::reference_of(t),
            }
        });
        let roof = model.map(|m| {
            let caps = m.caps();
            Roof {
                peak_tflops: caps.peak_tflops_f16,
                bandwidth_gbs: caps.mem_bandwidth_gbs,
                source: m.caps_source(),
            }
        });
        let mut second = format!(
            "{} winners · intensity = FLOPs / compulsory DRAM bytes · throughput = FLOPs / median time",
            points.len()
        );
        if skipped > 0 {
            second.push_str(&format!(
                " · {skipped} without a known problem or a plottable time left out"
            ));
        }
        if roof.is_none() {
            second.push_str(&format!(" · no ceilings: unknown arch {}", device.arch));
        }
        let templates: Vec<String> = points
            .iter()
            .map(|p| p.template.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(RooflineFigure {
            title: format!("Roofline: {} ({})", device.name, device.arch),
            lines: vec![device.to_string(), second],
            points,
            roof,
            templates,
            common,
        })
    }
}

const PANEL: u32 = 480;

fn p_of(p: &Point) -> (f64, f64) {
    (p.intensity, p.tflops)
}

impl Figure for RooflineFigure {
    fn size(&self) -> (u32, u32) {
        (1200, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let (top, body) = root.split_vertically(header_height(self.lines.len()));
        header(&top, &self.title, &self.lines)?;
        let w = body.dim_in_pixel().0;
        let (chart_area, panel) = body.split_horizontally(w - PANEL);

        let ai_lo = self
            .points
            .iter()
            .map(|p| p.intensity)
            .fold(f64::MAX, f64::min);
        let ai_hi = self.points.iter().map(|p| p.intensity).fold(0.0, f64::max);
        let tf_lo = self
            .points
            .iter()
            .map(|p| p.tflops)
            .fold(f64::MAX, f64::min);
        let tf_hi = self.points.iter().map(|p| p.tflops).fold(0.0, f64::max);
        // Lower ends on a power of ten, upper ends with a little room above the data.
        let floor10 = |v: f64| 10f64.powf(v.log10().floor());
        let (x0, x1) = match &self.roof {
            Some(r) => (
                floor10((ai_lo / 2.0).min(r.ridge() / 20.0)),
                (ai_hi * 3.0).max(r.ridge() * 8.0),
            ),
            None => (floor10(ai_lo / 2.0), ai_hi * 3.0),
        };
        let (y0, y1) = match &self.roof {
            Some(r) => (floor10((tf_lo / 2.0).min(r.at(x0))), r.peak_tflops * 2.5),
            None => (floor10(tf_lo / 2.0), tf_hi * 3.0),
        };
        let mut chart = ChartBuilder::on(&chart_area)
            .margin_left(10)
            .margin_right(25)
            .margin_top(10)
            .margin_bottom(10)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .bold_line_style(LIGHT_GREY)
            .light_line_style(TRANSPARENT)
            .x_desc("arithmetic intensity (FLOP/byte)")
            .y_desc("achieved throughput (TFLOP/s)")
            .axis_desc_style(text(AXIS, &BLACK))
            .label_style(text(TICKS, &DARK))
            .x_label_formatter(&|v| num(*v))
            .y_label_formatter(&|v| num(*v))
            .draw()
            .map_err(drawing)?;

        // Pixel boxes (left, top, right, bottom) that point numbers must not cover.
        let mut fixed: Vec<(i32, i32, i32, i32)> = Vec::new();
        if let Some(r) = &self.roof {
            let ridge = r.ridge();
            let slope: Vec<(f64, f64)> = (0..=64)
                .map(|i| x0 * (ridge / x0).powf(i as f64 / 64.0))
                .map(|ai| (ai, r.at(ai)))
                .filter(|&(_, y)| y >= y0)
                .collect();
            chart
                .draw_series(LineSeries::new(slope, RED.stroke_width(3)))
                .map_err(drawing)?
                .label(format!("bandwidth slope: {} GB/s", num(r.bandwidth_gbs)))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y + 5), (x + 22, y - 5)], RED.stroke_width(3))
                });
            chart
                .draw_series(LineSeries::new(
                    vec![(ridge, r.peak_tflops), (x1, r.peak_tflops)],
                    BLACK.stroke_width(3),
                ))
                .map_err(drawing)?
                .label(format!(
                    "compute ceiling: {} TFLOP/s (f16)",
                    num(r.peak_tflops)
                ))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], BLACK.stroke_width(3))
                });
            // Dashed continuations, so the ridge point reads as the corner it is.
            let dashes = |a: (f64, f64), b: (f64, f64)| {
                (0..24).filter(|i| i % 2 == 0).map(move |i| {
                    let t0 = i as f64 / 24.0;
                    let t1 = (i + 1) as f64 / 24.0;
                    let lerp = |t: f64| (a.0 * (b.0 / a.0).powf(t), a.1 * (b.1 / a.1).powf(t));
                    PathElement::new(vec![lerp(t0), lerp(t1)], GREY.stroke_width(1))
                })
            };
            chart
                .draw_series(dashes(
                    (x0.max(ridge / 1e3), r.peak_tflops),
                    (ridge, r.peak_tflops),
                ))
                .map_err(drawing)?;
            chart
                .draw_series(dashes(
                    (ridge, r.peak_tflops),
                    (
                        x1.min(ridge * 1e3),
                        (r.bandwidth_gbs * x1.min(ridge * 1e3) / 1e3).min(y1),
                    ),
                ))
                .map_err(drawing)?;
            // On-chart labels of the two ceilings and the ridge point. The peak label ends
            // left of the ridge, above the dashed ceiling: right of the ridge the dashed slope
            // would cross it.
            let ai_label = (x0 * ridge).sqrt();
            let labels = [
                (
                    (ridge, r.peak_tflops),
                    format!("peak {} TFLOP/s", num(r.peak_tflops)),
                    (-10, -6),
                    HPos::Right,
                    VPos::Bottom,
                    BLACK,
                    TICKS,
                ),
                (
                    (ai_label, r.at(ai_label)),
                    format!("{} GB/s", num(r.bandwidth_gbs)),
                    (14, 4),
                    HPos::Left,
                    VPos::Top,
                    RED,
                    TICKS,
                ),
                (
                    (ridge, r.peak_tflops),
                    format!("ridge {} FLOP/B", num(ridge)),
                    (8, 8),
                    HPos::Left,
                    VPos::Top,
                    GREY,
                    NOTE,
                ),
            ];
            let (cx0, cy) = chart.backend_coord(&(ridge, r.peak_tflops));
            let (cx1, _) = chart.backend_coord(&(x1, r.peak_tflops));
            fixed.push((cx0, cy - 3, cx1, cy + 3));
            for (at, label, offset, hpos, vpos, color, size) in labels {
                let (px, py) = chart.backend_coord(&at);
                let w = width_of(root, &label, &text(size, &color)) as i32;
                let (x, y) = (px + offset.0, py + offset.1);
                let x = if matches!(hpos, HPos::Right) {
                    x - w
                } else {
                    x
                };
                fixed.push(match vpos {
                    VPos::Bottom => (x, y - size as i32, x + w, y),
                    _ => (x, y, x + w, y + size as i32),
                });
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(at)
                            + Text::new(
                                label,
                                offset,
                                text(size, &color).pos(Pos::new(hpos, vpos)),
                            ),
                    ))
                    .map_err(drawing)?;
            }
        }
        for (t, template) in self.templates.iter().enumerate() {
            let color = PALETTE[t % PALETTE.len()];
            let color = if color == RED { PALETTE[0] } else { color };
            chart
                .draw_series(
                    self.points
                        .iter()
                        .filter(|p| &p.template == template)
                        .map(|p| Circle::new((p.intensity, p.tflops), 6, color.filled())),
                )
                .map_err(drawing)?
                .label(format!("{template} winners"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 6, color.filled()));
        }
        // Numbers next to the points, each where it covers no point and no other number; one
        // that has to move further away gets a leader line.
        let centers: Vec<(i32, i32)> = self
            .points
            .iter()
            .map(|p| chart.backend_coord(&(p.intensity, p.tflops)))
            .collect();
        let mut boxes: Vec<(i32, i32, i32, i32)> = centers
            .iter()
            .map(|&(x, y)| (x - 6, y - 6, x + 6, y + 6))
            .chain(fixed)
            .collect();
        let overlaps = |a: (i32, i32, i32, i32), b: &(i32, i32, i32, i32)| {
            a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
        };
        let directions = [
            (1, -1),
            (1, 1),
            (-1, -1),
            (-1, 1),
            (0, -1),
            (0, 1),
            (1, 0),
            (-1, 0),
        ];
        for (i, &(px, py)) in centers.iter().enumerate() {
            let label = format!("{}", i + 1);
            let (w, h) = (8 * label.len() as i32 + 2, 14);
            let mut spot = None;
            'search: for reach in [9, 20, 32, 44] {
                for (dx, dy) in directions {
                    // The box's corner nearest the point sits `reach` away from it.
                    let x = match dx {
                        1 => px + reach - 2,
                        -1 => px - reach + 2 - w,
                        _ => px - w / 2,
                    };
                    let y = match dy {
                        1 => py + reach - 2,
                        -1 => py - reach + 2 - h,
                        _ => py - h / 2,
                    };
                    let b = (x, y, x + w, y + h);
                    if !boxes.iter().any(|o| overlaps(b, o)) {
                        spot = Some((b, reach));
                        break 'search;
                    }
                }
            }
            let (b, reach) = spot.unwrap_or(((px + 6, py - 20, px + 6 + w, py - 6), 10));
            boxes.push(b);
            let at = (p_of(&self.points[i]), (b.0 - px, b.1 - py));
            if reach > 9 {
                let end = ((b.0 + b.2) / 2, (b.1 + b.3) / 2);
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(at.0)
                            + PathElement::new(
                                vec![(0, 0), (end.0 - px, end.1 - py)],
                                GREY.stroke_width(1),
                            ),
                    ))
                    .map_err(drawing)?;
            }
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(at.0) + Text::new(label, at.1, text(NOTE, &DARK)),
                ))
                .map_err(drawing)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font(text(TICKS, &BLACK))
            .margin(12)
            .draw()
            .map_err(drawing)?;
        self.draw_panel(&panel)
    }
}

impl RooflineFigure {
    /// The numbered list of points.
    fn draw_panel<DB: DrawingBackend>(&self, panel: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let (w, h) = panel.dim_in_pixel();
        let width = w - 16;
        let put = |s: &str, x: i32, y: i32, size: u32, color: &RGBColor| {
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
        put("Winners (lowest intensity first)", 4, y, AXIS, &BLACK)?;
        y += 26;
        if !self.common.is_empty() {
            put(&format!("all: {}", self.common), 4, y, NOTE, &GREY)?;
            y += 20;
        }
        // #, achieved (in the op's unit), % of the roof, problem (wrapped, never cut).
        let cols: [i32; 4] = [4, 30, 128, 186];
        put("#", cols[0], y, NOTE, &GREY)?;
        put("achieved", cols[1], y, NOTE, &GREY)?;
        if self.roof.is_some() {
            put("% roof", cols[2], y, NOTE, &GREY)?;
        }
        put("problem", cols[3], y, NOTE, &GREY)?;
        y += 20;
        let row = 19;
        let line = 15;
        let problem_style = text(NOTE - 2, &BLACK);
        let problem_px = width.saturating_sub(cols[3] as u32);
        let bottom = h as i32 - 28;
        let mut shown = 0;
        for (i, p) in self.points.iter().enumerate() {
            let lines = wrap(panel, &p.short, &problem_style, problem_px, 3);
            let needed = row + line * (lines.len().max(1) as i32 - 1);
            if y + needed > bottom {
                break;
            }
            put(&format!("{}", i + 1), cols[0], y, NOTE, &BLACK)?;
            put(&p.achieved, cols[1], y, NOTE, &BLACK)?;
            if let Some(r) = &self.roof {
                let share = 100.0 * p.tflops / r.at(p.intensity);
                put(&format!("{share:.0}%"), cols[2], y, NOTE, &BLACK)?;
            }
            for (k, l) in lines.iter().enumerate() {
                put(l, cols[3], y + 1 + line * k as i32, NOTE - 2, &BLACK)?;
            }
            y += needed;
            shown += 1;
        }
        if shown < self.points.len() {
            put(
                &format!("… and {} more", self.points.len() - shown),
                4,
                y,
                NOTE,
                &GREY,
            )?;
        } else if let Some(r) = &self.roof {
            y += 6;
            put(&format!("roof: {}", r.source), 4, y, NOTE - 1, &GREY)?;
        }
        Ok(())
    }
}
