//! Charts in the style of the thesis' figures, as PNG and SVG (plotters, pure Rust).
//!
//! - `scale_nr`: throughput and heap over time, LD-NR next to NR (Figs. 6.8b, 6.3a/d);
//! - `scale_maps`: throughput over time, LD-NR next to the concurrent maps (Fig. 6.8c);
//! - `writes_<T>t`: throughput per write ratio at `T` threads, one bar per system
//!   (Fig. 6.3b);
//! - `replicas`: throughput and heap over time while replicas are removed and added
//!   (Fig. 6.8a);
//! - `inactivity`: throughput over time with the idle windows shaded and NR's stall
//!   marked (Figs. 6.3f, 6.9).
//!
//! Phases are drawn as alternating grey and white bands, labelled at the top, like the
//! thesis' figures. Text uses the bundled DejaVu Sans (see `assets/`).

use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::report::Report;
use crate::runner::Phase;
use crate::suite::{Measured, WRITE_SWEEP};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

type Res<T = ()> = Result<T, Box<dyn Error>>;

/// A line: a name and its (x, y) points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// A phase band: `[start, end)` seconds and its label.
struct Band {
    start: f64,
    end: f64,
    label: String,
    /// A darker inner window (the idle third of an inactivity phase).
    dark: Option<(f64, f64)>,
}

enum Figure {
    /// Panels stacked vertically, sharing the bands: (title, y label, series).
    Time {
        panels: Vec<(String, String, Vec<Series>)>,
        bands: Vec<Band>,
        marks: Vec<(f64, String)>,
    },
    /// Grouped bars: group labels, then per system its value per group.
    Bars {
        title: String,
        groups: Vec<String>,
        systems: Vec<(String, Vec<Option<f64>>)>,
    },
}

fn color(name: &str, i: usize) -> RGBColor {
    match name {
        "ldnr" => RGBColor(0, 90, 200),
        "ldnr1" => RGBColor(90, 160, 235),
        "ldnr2" => RGBColor(0, 50, 140),
        "nr1" => RGBColor(240, 140, 0),
        "nr2" | "nr" => RGBColor(200, 70, 0),
        "nr4" => RGBColor(140, 40, 0),
        "std" => RGBColor(100, 100, 100),
        "dashmap" => RGBColor(0, 150, 70),
        "papaya" => RGBColor(160, 0, 160),
        "scc" => RGBColor(190, 160, 0),
        "flurry" => RGBColor(0, 170, 170),
        _ => {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

impl Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Res
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        match self {
            Figure::Time {
                panels,
                bands,
                marks,
            } => {
                let areas = root.split_evenly((panels.len(), 1));
                for ((title, y_label, series), area) in panels.iter().zip(&areas) {
                    time_panel(area, title, y_label, series, bands, marks)?;
                }
            }
            Figure::Bars {
                title,
                groups,
                systems,
            } => bars(root, title, groups, systems)?,
        }
        root.present()?;
        Ok(())
    }
}

fn time_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    series: &[Series],
    bands: &[Band],
    marks: &[(f64, String)],
) -> Res
where
    DB::ErrorType: 'static,
{
    let x_max = bands.last().map(|b| b.end).unwrap_or(1.0).max(
        series
            .iter()
            .flat_map(|s| &s.points)
            .map(|p| p.0)
            .fold(0.0, f64::max),
    );
    let y_max = series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    for (i, b) in bands.iter().enumerate() {
        let shade = if i % 2 == 0 {
            RGBColor(232, 232, 232)
        } else {
            WHITE
        };
        // The last band runs to the edge (samples may end a little after the plan).
        let end = if i + 1 == bands.len() { x_max } else { b.end };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(b.start, 0.0), (end, y_max)],
            shade.filled(),
        )))?;
        if let Some((s, e)) = b.dark {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(s, 0.0), (e, y_max)],
                RGBColor(205, 205, 220).filled(),
            )))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            b.label.clone(),
            ((b.start + b.end) / 2.0, y_max * 0.97),
            ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        )))?;
    }
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(1)
        .x_desc("time (s)")
        .y_desc(y_label)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let c = color(&s.name, i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
    }
    for (x, label) in marks {
        let red = RGBColor(200, 0, 0);
        chart.draw_series(LineSeries::new(
            vec![(*x, 0.0), (*x, y_max * 0.9)],
            red.stroke_width(2),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (*x, y_max * 0.88),
            ("sans-serif", 13)
                .into_font()
                .color(&red)
                .pos(Pos::new(HPos::Left, VPos::Top)),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    groups: &[String],
    systems: &[(String, Vec<Option<f64>>)],
) -> Res
where
    DB::ErrorType: 'static,
{
    let y_max = systems
        .iter()
        .flat_map(|s| s.1.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1e-3)
        * 1.25;
    let n = groups.len() as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..y_max)?;
    let label = |x: &f64| {
        let g = x.round();
        if (x - g).abs() < 1e-6 && g >= 0.0 && (g as usize) < groups.len() {
            groups[g as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(1)
        .x_labels(groups.len())
        .x_label_formatter(&label)
        .x_desc("write ratio")
        .y_desc("Mops/s")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    let width = 0.84 / systems.len().max(1) as f64;
    for (j, (name, values)) in systems.iter().enumerate() {
        let c = color(name, j);
        let rects = values.iter().enumerate().filter_map(|(g, v)| {
            v.map(|v| {
                let x0 = g as f64 - 0.42 + j as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], c.filled())
            })
        });
        chart
            .draw_series(rects)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn save(dir: &Path, stem: &str, size: (u32, u32), fig: &Figure) -> Res<Vec<PathBuf>> {
    let png = dir.join(format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        fig.draw(&root)?;
    }
    let svg = dir.join(format!("{stem}.svg"));
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        fig.draw(&root)?;
    }
    Ok(vec![png, svg])
}

/// Bands for a job's phases, labelled by `label`.
fn bands(phases: &[Phase], label: impl Fn(usize, &Phase) -> String) -> Vec<Band> {
    let mut t = 0.0;
    phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let start = t;
            t += p.duration.as_secs_f64();
            Band {
                start,
                end: t,
                label: label(i, p),
                dark: None,
            }
        })
        .collect()
}

fn throughput(m: &Measured) -> Series {
    Series {
        name: m.run.system.clone(),
        points: m
            .run
            .samples
            .iter()
            .map(|s| (s.time, s.ops_per_sec / 1e6))
            .collect(),
    }
}

fn heap(m: &Measured) -> Option<Series> {
    let points: Vec<(f64, f64)> = m
        .run
        .samples
        .iter()
        .filter_map(|s| s.heap_bytes.map(|h| (s.time, h as f64 / (1 << 20) as f64)))
        .collect();
    (!points.is_empty()).then(|| Series {
        name: m.run.system.clone(),
        points,
    })
}

/// Draws every chart the report has data for into `dir`; returns the files written.
///
/// # Errors
///
/// A drawing or I/O error.
pub(crate) fn render(dir: &Path, r: &Report) -> Res<Vec<PathBuf>> {
    // Registering twice (a second report in one process) is harmless.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let of = |e: &str| -> Vec<&Measured> {
        r.measured
            .iter()
            .filter(|m| m.job.experiment == e)
            .collect()
    };

    let scale = of("scale");
    if let Some(first) = scale.first() {
        let b = bands(&first.job.phases, |_, p| format!("{} thr", p.threads));
        let w = first.job.phases[0].write_pct;
        let replicated: Vec<&&Measured> = scale
            .iter()
            .filter(|m| m.run.system.starts_with("ldnr") || m.run.system.starts_with("nr"))
            .collect();
        let mut panels = vec![(
            format!("scale: LD-NR (dynamic replicas) vs NR, {w}% writes"),
            "Mops/s".to_string(),
            replicated.iter().map(|m| throughput(m)).collect(),
        )];
        let heaps: Vec<Series> = replicated.iter().filter_map(|m| heap(m)).collect();
        if !heaps.is_empty() {
            panels.push(("heap".to_string(), "MiB".to_string(), heaps));
        }
        let fig = Figure::Time {
            panels,
            bands: b,
            marks: Vec::new(),
        };
        files.extend(save(dir, "scale_nr", (1000, 760), &fig)?);
        let maps: Vec<Series> = scale
            .iter()
            .filter(|m| !m.run.system.starts_with("nr"))
            .map(|m| throughput(m))
            .collect();
        let fig = Figure::Time {
            panels: vec![(
                format!("scale: LD-NR vs concurrent maps, {w}% writes"),
                "Mops/s".to_string(),
                maps,
            )],
            bands: bands(&first.job.phases, |_, p| format!("{} thr", p.threads)),
            marks: Vec::new(),
        };
        files.extend(save(dir, "scale_maps", (1000, 460), &fig)?);
    }

    let writes = of("writes");
    let mut counts: Vec<usize> = writes.iter().map(|m| m.job.phases[0].threads).collect();
    counts.dedup();
    for t in counts {
        let systems = writes
            .iter()
            .filter(|m| m.job.phases[0].threads == t)
            .map(|m| {
                let v = m
                    .run
                    .phases
                    .iter()
                    .map(|p| p.map(|p| p.ops_per_sec / 1e6))
                    .collect();
                (m.run.system.clone(), v)
            })
            .collect();
        let fig = Figure::Bars {
            title: format!("writes: throughput per write ratio, {t} threads"),
            groups: WRITE_SWEEP.iter().map(|w| format!("{w}%")).collect(),
            systems,
        };
        files.extend(save(dir, &format!("writes_{t}t"), (1000, 460), &fig)?);
    }

    if let Some(m) = of("replicas").first() {
        let reps: Vec<usize> = m
            .run
            .phases
            .iter()
            .map(|p| p.map_or(0, |p| p.replicas))
            .collect();
        let b = bands(&m.job.phases, |i, _| format!("{} rep", reps[i]));
        let mut panels = vec![(
            format!(
                "replicas: {} threads, {}% writes, replicas removed then added",
                m.job.phases[0].threads, m.job.phases[0].write_pct
            ),
            "Mops/s".to_string(),
            vec![throughput(m)],
        )];
        if let Some(h) = heap(m) {
            panels.push(("heap".to_string(), "MiB".to_string(), vec![h]));
        }
        let fig = Figure::Time {
            panels,
            bands: b,
            marks: Vec::new(),
        };
        files.extend(save(dir, "replicas", (1000, 760), &fig)?);
    }

    if let Some(ia) = &r.inactivity {
        let len = ia.params.phase.as_secs_f64();
        let b = ia
            .params
            .phases
            .iter()
            .enumerate()
            .map(|(i, t)| Band {
                start: i as f64 * len,
                end: (i + 1) as f64 * len,
                label: format!("{t} thr"),
                dark: Some((i as f64 * len + len / 3.0, i as f64 * len + 2.0 * len / 3.0)),
            })
            .collect();
        let series = ia
            .runs
            .iter()
            .map(|run| Series {
                name: run.system.clone(),
                points: run
                    .samples
                    .iter()
                    .map(|s| (s.t, s.ops_per_sec / 1e6))
                    .collect(),
            })
            .collect();
        let marks = ia
            .runs
            .iter()
            .filter_map(|run| {
                run.stalled_at
                    .map(|t| (t, format!("{} stalled", run.system)))
            })
            .collect();
        let fig = Figure::Time {
            panels: vec![(
                format!(
                    "inactivity: replica 0 idle in the shaded windows, {}% writes",
                    ia.params.write_pct
                ),
                "Mops/s".to_string(),
                series,
            )],
            bands: b,
            marks,
        };
        files.extend(save(dir, "inactivity", (1000, 460), &fig)?);
    }
    Ok(files)
}
