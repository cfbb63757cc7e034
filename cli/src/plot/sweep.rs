//! `tessera plot sweep`: every candidate of one problem on one device, by throughput.
//!
//! Candidates that ran (`ok`) are bars sorted by throughput, fastest first, with their
//! p10–p90 range as whiskers; the winner is highlighted and labelled. Candidates that did not
//! (rejected, compile errors, wrong results, ...) are marked at zero after them, one marker
//! shape and colour per status, and listed with their reasons in a side panel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::bail;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tessera_cache::{Explanation, ResultRow, Status, ThroughputUnit, Timing};

use super::{
    bullet_list, common_affixes, device_matches, drawing, fit, header, header_height, num,
    open_existing, plottable, save, shorten, text, tflops, work_of, wrap, OutArgs, AXIS, BLUE,
    BROWN, DARK, GREY, LIGHT_GREY, NOTE, ORANGE, PINK, PURPLE, RED, TICKS,
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

impl super::Figure for SweepFigure {
    fn size(&self) -> (u32, u32) {
        (1200, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let (top, body) = root.split_vertically(header_height(self.lines.len()));
        header(&top, &self.title, &self.lines)?;
        let (chart_area, panel) = if self.not_ok.is_empty() {
            (body, None)
        } else {
            let w = body.dim_in_pixel().0;
            let (c, p) = body.split_horizontally(w - PANEL);
            (c, Some(p))
        };
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
            .margin_left(10)
            .margin_right(20)
            .margin_top(10)
            .margin_bottom(10)
            .x_label_area_size(55)
            .y_label_area_size(75)
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
        let ok_label = format!("ok ({})", self.ok.len());
        chart
            .draw_series(
                self.ok
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != self.winner)
                    .map(|(i, b)| bar(i, b.value)),
            )
            .map_err(drawing)?
            .label(ok_label)
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], BLUE.filled()));
        if let Some(w) = self.winner {
            let b = &self.ok[w];
            let x = w as f64 + 1.0;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - winner_half, 0.0), (x + winner_half, b.value)],
                    ORANGE.filled(),
                )))
                .map_err(drawing)?
                .label("winner")
                .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], ORANGE.filled()));
            // Label above every bar (they may all be about as tall), with a leader line
            // down to the winner's bar.
            let label = format!("winner: {} — {} {}", b.label, num(b.value), self.unit);
            let label_y = top_value * 1.09;
            let bar_top = b.range.map_or(b.value, |r| r.1);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, bar_top), (x, label_y)],
                    ORANGE.stroke_width(2),
                )))
                .map_err(drawing)?;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x, label_y))
                        + Text::new(
                            label,
                            (4, -2),
                            text(TICKS, &BLACK).pos(Pos::new(HPos::Left, VPos::Bottom)),
                        ),
                ))
                .map_err(drawing)?;
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
                .map_err(drawing)?
                .label("p10–p90 spread")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x + 8, y - 7), (x + 8, y + 7)], BLACK.stroke_width(1))
                });
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
            for (status, count) in self.statuses() {
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
                    .map_err(drawing)?
                    .label(format!("{status} ({count}), at 0"))
                    .legend(move |(x, y)| Cross::new((x + 8, y), 5, color.stroke_width(2)));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font(text(TICKS, &BLACK))
            .margin(12)
            .draw()
            .map_err(drawing)?;

        if let Some(panel) = panel {
            self.draw_panel(&panel)?;
        }
        Ok(())
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
    use super::super::{draw_to, register_fonts, Format};
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
}
