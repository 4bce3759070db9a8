//! The sweep's chart: drop fraction against offered load, one line per
//! configuration, as SVG and PNG (`plotters`).
//!
//! Text needs a TrueType font read at run time (no fontconfig or freetype):
//! DejaVu Sans from Debian's `fonts-dejavu-core`, or the file named by
//! `BUFFER_DEMO_FONT`. Both axes are logarithmic; a trial without drops is
//! drawn on the floor (0.0001 %). A dashed line marks the loss-free limit
//! (0.01 %), and each configuration's highest loss-free trial is labelled
//! with the rate the blaster reached there.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::table::SweepTable;

/// Font files tried in order after `BUFFER_DEMO_FONT`.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Floor of the y axis, percent: drops of 0 are drawn here.
const FLOOR_PCT: f64 = 1e-4;

fn register_font() -> std::result::Result<(), String> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let env = std::env::var("BUFFER_DEMO_FONT").ok();
        let candidates = env
            .iter()
            .map(String::as_str)
            .chain(FONT_PATHS.iter().copied());
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                // The font registry keeps `'static` bytes: one font, leaked once.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{path} is not a usable font"));
            }
        }
        Err("no TrueType font found: install fonts-dejavu-core or set BUFFER_DEMO_FONT".into())
    })
    .clone()
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    table: &SweepTable,
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let max_x = table
        .trials
        .iter()
        .map(|t| t.offered / 1000.0)
        .fold(10.0, f64::max)
        * 1.3;
    let min_x = table
        .trials
        .iter()
        .map(|t| t.offered / 1000.0)
        .fold(max_x / 2.0, f64::min)
        .max(0.001)
        / 1.3;
    let caption = format!(
        "UDP sink drops vs offered load ({} B datagrams, {} us work{})",
        table.size,
        table.work_us,
        if table.netns { ", netns" } else { ", loopback" }
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((min_x..max_x).log_scale(), (FLOOR_PCT..100f64).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("offered load, thousand datagrams/s (log)")
        .y_desc("dropped, % of sent (0 drawn at 0.0001)")
        .y_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    let mut labels: Vec<&str> = Vec::new();
    for t in &table.trials {
        if !labels.contains(&t.label.as_str()) {
            labels.push(&t.label);
        }
    }
    for (i, label) in labels.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut points: Vec<(f64, f64)> = table
            .trials
            .iter()
            .filter(|t| t.label == *label)
            .map(|t| (t.offered / 1000.0, (t.drop_fraction * 100.0).max(FLOOR_PCT)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(e)?;
    }
    // The loss-free limit.
    let limit_pct = crate::table::LOSS_FREE * 100.0;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(min_x, limit_pct), (max_x, limit_pct)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(e)?
        .label("0.01 % (loss-free limit)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    // Each configuration's highest loss-free trial: the rate reached there.
    for (i, label) in labels.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let best = table
            .trials
            .iter()
            .filter(|t| t.label == *label && t.drop_fraction <= crate::table::LOSS_FREE)
            .max_by(|a, b| a.offered.total_cmp(&b.offered));
        if let Some(t) = best {
            let at = (t.offered / 1000.0, (t.drop_fraction * 100.0).max(FLOOR_PCT));
            let text = if t.achieved >= 1e6 {
                format!("{:.2}M/s", t.achieved / 1e6)
            } else {
                format!("{:.0}k/s", t.achieved / 1e3)
            };
            chart
                .draw_series(std::iter::once(TriangleMarker::new(at, 6, color.filled())))
                .map_err(e)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (at.0, at.1 * 1.6_f64.powi(i as i32 % 6 + 1)),
                    ("sans-serif", 12).into_font().color(&color),
                )))
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::MiddleRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

/// Draws the chart of `table` to `svg` and `png` (1000 x 640).
pub fn chart(table: &SweepTable, svg: &Path, png: &Path) -> Result<()> {
    let fail = |path: &Path, reason: String| Error::Chart {
        path: path.display().to_string(),
        reason,
    };
    register_font().map_err(|r| fail(svg, r))?;
    draw(SVGBackend::new(svg, (1000, 640)).into_drawing_area(), table).map_err(|r| fail(svg, r))?;
    draw(
        BitMapBackend::new(png, (1000, 640)).into_drawing_area(),
        table,
    )
    .map_err(|r| fail(png, r))?;
    Ok(())
}
