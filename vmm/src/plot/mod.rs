//! Plots as SVG text, drawn with `plotters` (its SVG backend, no font files: text stays SVG
//! `<text>`, laid out with plotters' built-in estimate). The one place popvmm draws: the page heat
//! map of `popvmm ctl pages --svg` and of `/pages` in an exit summary ([`page_heatmap`]), and the
//! evaluation report's figures (`popvmm-eval`, `evaluate/`): panels of lines against a common x
//! axis ([`line_panels`]: figure 7, NPB time and messages against islands) and the fault latency
//! histogram ([`latency_histogram`]).
//!
//! Behind popvmm's `plots` feature (on by default): `--no-default-features` leaves plotters out.
//! Every function takes plain data (or the API's own types) and returns the SVG document.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::api::types::{LatencyBucket, PageRow, SharingPattern};

/// A drawing failed (plotters' error, as text).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {what}: {message}")]
pub struct PlotError {
    pub what: &'static str,
    pub message: String,
}

fn fail<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> PlotError {
    move |e| PlotError {
        what,
        message: format!("{e:?}"),
    }
}

/// How a series' points are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Solid,
    Dashed,
    Dotted,
    None,
}

/// What marks each point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    None,
    Circle,
    Triangle,
    Square,
    Cross,
}

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's text; series of the same label in several panels share one legend entry.
    pub label: String,
    pub color: (u8, u8, u8),
    pub line: Line,
    pub marker: Marker,
    /// Line width in pixels.
    pub width: u32,
    /// (x, y), in x order.
    pub points: Vec<(f64, f64)>,
    /// (x, low, high): a vertical bar from low to high at x (the spread of repeated runs).
    pub whiskers: Vec<(f64, f64, f64)>,
}

/// One chart of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

/// The axes every panel of a figure shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Axes {
    pub x_desc: String,
    pub y_desc: String,
    /// A logarithmic y axis; y values of 0 (or less) are drawn on its bottom edge, labelled 0.
    pub log_y: bool,
    /// Named ticks on the x axis (the only labels then); None: plotters' numeric ticks.
    pub x_ticks: Option<Vec<(f64, String)>>,
}

/// Colours that stay apart in print: the "Tableau 10" palette.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

fn rgb(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

const FONT: &str = "sans-serif";
const LEGEND_ROW: u32 = 18;

/// Where a value sits on a (possibly logarithmic) y axis whose floor is `floor`.
fn y_at(y: f64, log: bool, floor: f64) -> f64 {
    if log && y < floor {
        floor
    } else {
        y
    }
}

/// A figure of `panels` laid out `cols` to a row, each a chart of its series against the shared
/// axes, with one legend for the whole figure under the panels and an optional note under it.
pub fn line_panels(
    title: &str,
    panels: &[Panel],
    cols: usize,
    axes: &Axes,
    note: Option<&str>,
) -> Result<String, PlotError> {
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols).max(1);
    let legend = legend_entries(panels);
    let legend_cols = 3usize;
    let legend_h = (legend.len().div_ceil(legend_cols) as u32) * LEGEND_ROW + 16;
    let note_h = if note.is_some() { 22 } else { 0 };
    let panel_w = 360u32;
    let panel_h = 260u32;
    let width = panel_w * cols as u32;
    let height = 40 + panel_h * rows as u32 + legend_h + note_h;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(fail("the background"))?;
        let root = root.titled(title, (FONT, 20)).map_err(fail("the title"))?;
        let (grid, bottom) = root.split_vertically(panel_h * rows as u32);
        let areas = grid.split_evenly((rows, cols));
        for (area, panel) in areas.iter().zip(panels) {
            draw_panel(area, panel, axes)?;
        }
        let (legend_area, note_area) = bottom.split_vertically(legend_h);
        draw_legend(&legend_area, &legend, legend_cols)?;
        if let Some(note) = note {
            note_area
                .draw_text(note, &(FONT, 12).into_font().color(&BLACK), (10, 4))
                .map_err(fail("the note"))?;
        }
        root.present().map_err(fail("the figure"))?;
    }
    Ok(svg)
}

/// The legend's entries: the first series of each label, in order of appearance.
fn legend_entries(panels: &[Panel]) -> Vec<Series> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for s in panels.iter().flat_map(|p| &p.series) {
        if seen.insert(s.label.clone()) {
            out.push(Series {
                points: vec![],
                whiskers: vec![],
                ..s.clone()
            });
        }
    }
    out
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    axes: &Axes,
) -> Result<(), PlotError> {
    let points = panel.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0f64);
    let mut y_min_positive = f64::MAX;
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
        if y > 0.0 {
            y_min_positive = y_min_positive.min(y);
        }
    }
    if let Some(ticks) = &axes.x_ticks {
        for (x, _) in ticks {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
        }
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    let pad = ((x1 - x0) * 0.05).max(0.3);
    let (x0, x1) = (x0 - pad, x1 + pad);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, (FONT, 14))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(52);
    let x_fmt = |x: &f64| -> String {
        match &axes.x_ticks {
            Some(ticks) => ticks
                .iter()
                .find(|(t, _)| (t - x).abs() < 1e-6)
                .map(|(_, l)| l.clone())
                .unwrap_or_default(),
            None => format!("{x}"),
        }
    };
    let x_labels = match &axes.x_ticks {
        Some(t) => (t.len() * 8).max(2),
        None => 8,
    };
    let style = |s: &Series| ShapeStyle::from(&rgb(s.color)).stroke_width(s.width.max(1));
    if axes.log_y {
        let floor = if y_min_positive == f64::MAX {
            0.5
        } else {
            (y_min_positive / 2.0).min(0.5)
        };
        let top = (y1.max(1.0)) * 2.0;
        let mut chart = builder
            .build_cartesian_2d(x0..x1, (floor..top).log_scale())
            .map_err(fail("a panel"))?;
        chart
            .configure_mesh()
            .x_desc(axes.x_desc.as_str())
            .y_desc(axes.y_desc.as_str())
            .x_labels(x_labels)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|y: &f64| {
                if *y <= floor * 1.0001 {
                    "0".to_string()
                } else {
                    short_number(*y)
                }
            })
            .light_line_style(RGBColor(248, 248, 248))
            .bold_line_style(RGBColor(220, 220, 220))
            .label_style((FONT, 11))
            .draw()
            .map_err(fail("the axes"))?;
        for s in &panel.series {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|&(x, y)| (x, y_at(y, true, floor)))
                .collect();
            draw_series(&mut chart, s, pts, style(s), (true, floor))?;
        }
    } else {
        let mut chart = builder
            .build_cartesian_2d(x0..x1, 0f64..(y1.max(1.0) * 1.1))
            .map_err(fail("a panel"))?;
        chart
            .configure_mesh()
            .x_desc(axes.x_desc.as_str())
            .y_desc(axes.y_desc.as_str())
            .x_labels(x_labels)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|y: &f64| short_number(*y))
            .light_line_style(RGBColor(248, 248, 248))
            .bold_line_style(RGBColor(220, 220, 220))
            .label_style((FONT, 11))
            .draw()
            .map_err(fail("the axes"))?;
        for s in &panel.series {
            draw_series(&mut chart, s, s.points.clone(), style(s), (false, 0.0))?;
        }
    }
    Ok(())
}

fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    s: &Series,
    pts: Vec<(f64, f64)>,
    style: ShapeStyle,
    (log, floor): (bool, f64),
) -> Result<(), PlotError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    match s.line {
        Line::Solid => {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(fail("a line"))?;
        }
        Line::Dashed => {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 7, 4, style))
                .map_err(fail("a line"))?;
        }
        Line::Dotted => {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 2, 3, style))
                .map_err(fail("a line"))?;
        }
        Line::None => {}
    }
    let color = rgb(s.color);
    for &(x, lo, hi) in &s.whiskers {
        let (lo, hi) = (y_at(lo, log, floor), y_at(hi, log, floor));
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, lo), (x, hi)],
                color.stroke_width(1),
            )))
            .map_err(fail("a whisker"))?;
        for y in [lo, hi] {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x, y)) + PathElement::new(vec![(-3, 0), (3, 0)], color),
                ))
                .map_err(fail("a whisker"))?;
        }
    }
    for p in pts {
        match s.marker {
            Marker::None => {}
            Marker::Circle => {
                chart
                    .draw_series(std::iter::once(Circle::new(p, 3, color.filled())))
                    .map_err(fail("a marker"))?;
            }
            Marker::Triangle => {
                chart
                    .draw_series(std::iter::once(TriangleMarker::new(p, 4, color.filled())))
                    .map_err(fail("a marker"))?;
            }
            Marker::Square => {
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(p) + Rectangle::new([(-3, -3), (3, 3)], color.filled()),
                    ))
                    .map_err(fail("a marker"))?;
            }
            Marker::Cross => {
                chart
                    .draw_series(std::iter::once(Cross::new(p, 4, color.stroke_width(2))))
                    .map_err(fail("a marker"))?;
            }
        }
    }
    Ok(())
}

/// A legend of `entries` in `cols` columns, each a sample of the line and marker and its label.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[Series],
    cols: usize,
) -> Result<(), PlotError> {
    let (w, _) = area.dim_in_pixel();
    let col_w = (w as i32 - 20) / cols.max(1) as i32;
    for (i, s) in entries.iter().enumerate() {
        let x = 10 + (i % cols) as i32 * col_w;
        let y = 8 + (i / cols) as i32 * LEGEND_ROW as i32;
        let color = rgb(s.color);
        let style = ShapeStyle::from(&color).stroke_width(s.width.max(1));
        let (a, b) = ((x, y + 6), (x + 30, y + 6));
        match s.line {
            Line::Solid => area.draw(&PathElement::new(vec![a, b], style)),
            Line::Dashed => area.draw(&DashedPathElement::new(vec![a, b], 7, 4, style)),
            Line::Dotted => area.draw(&DashedPathElement::new(vec![a, b], 2, 3, style)),
            Line::None => Ok(()),
        }
        .map_err(fail("the legend"))?;
        let mid = (x + 15, y + 6);
        match s.marker {
            Marker::None => Ok(()),
            Marker::Circle => area.draw(&Circle::new(mid, 3, color.filled())),
            Marker::Triangle => area.draw(&TriangleMarker::new(mid, 4, color.filled())),
            Marker::Square => area.draw(&Rectangle::new(
                [(mid.0 - 3, mid.1 - 3), (mid.0 + 3, mid.1 + 3)],
                color.filled(),
            )),
            Marker::Cross => area.draw(&Cross::new(mid, 4, color.stroke_width(2))),
        }
        .map_err(fail("the legend"))?;
        area.draw_text(&s.label, &(FONT, 12).into_font().color(&BLACK), (x + 36, y))
            .map_err(fail("the legend"))?;
    }
    Ok(())
}

/// 1234 -> "1234", 12345 -> "12k", 2500000 -> "2.5M", 0.5 -> "0.5".
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        trim(format!("{:.1}", v / 1e6)) + "M"
    } else if a >= 1e4 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 10.0 || a == a.trunc() {
        format!("{v:.0}")
    } else {
        trim(format!("{v:.2}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// One histogram of a latency figure: a label and its buckets (`Stats::fault_latency_histogram`).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub label: String,
    pub buckets: Vec<LatencyBucket>,
}

/// The fault latency histograms side by side: for each bucket (powers of two of microseconds),
/// the share of each histogram's faults that fell in it, with each histogram's fault count in
/// the legend. Buckets no histogram uses at either end are left out.
pub fn latency_histogram(title: &str, histograms: &[Histogram]) -> Result<String, PlotError> {
    let n_buckets = histograms
        .iter()
        .map(|h| h.buckets.len())
        .max()
        .unwrap_or(0);
    let used = |b: usize| {
        histograms
            .iter()
            .any(|h| h.buckets.get(b).is_some_and(|x| x.faults > 0))
    };
    let first = (0..n_buckets).find(|&b| used(b)).unwrap_or(0);
    let last = (0..n_buckets).rev().find(|&b| used(b)).unwrap_or(0);
    let shown: Vec<usize> = (first..=last.max(first)).collect();
    let label_of = |b: usize| -> String {
        let bucket = histograms.iter().find_map(|h| h.buckets.get(b).copied());
        match bucket {
            Some(LatencyBucket {
                from_us,
                below_us: Some(to),
                ..
            }) => format!("{}-{}", us_text(from_us), us_text(to)),
            Some(LatencyBucket { from_us, .. }) => format!(">={}", us_text(from_us)),
            None => String::new(),
        }
    };
    let width = (120 + shown.len() as u32 * 64).max(640);
    let legend_h = (histograms.len() as u32).div_ceil(2) * LEGEND_ROW + 16;
    let height = 400 + legend_h;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(fail("the background"))?;
        let (top, bottom) = root.split_vertically(400);
        let mut chart = ChartBuilder::on(&top)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(50)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..(shown.len() as f64 - 0.5), 0f64..105f64)
            .map_err(fail("the histogram"))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(shown.len() * 4 + 2)
            .x_label_formatter(&|x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < shown.len() {
                    label_of(shown[i as usize])
                } else {
                    String::new()
                }
            })
            .x_desc("fault latency (us; buckets are powers of two)")
            .y_desc("share of the faults (%)")
            .y_label_formatter(&|y: &f64| format!("{y:.0}"))
            .light_line_style(RGBColor(248, 248, 248))
            .bold_line_style(RGBColor(220, 220, 220))
            .label_style((FONT, 10))
            .draw()
            .map_err(fail("the axes"))?;
        let k = histograms.len().max(1) as f64;
        let bar = 0.8 / k;
        let mut entries = Vec::new();
        for (j, h) in histograms.iter().enumerate() {
            let total: u64 = h.buckets.iter().map(|b| b.faults).sum();
            let color = rgb(PALETTE[j % PALETTE.len()]);
            let bars = shown.iter().enumerate().filter_map(|(i, &b)| {
                let faults = h.buckets.get(b)?.faults;
                if faults == 0 || total == 0 {
                    return None;
                }
                let pct = faults as f64 * 100.0 / total as f64;
                let x = i as f64 - 0.4 + bar * j as f64;
                Some(Rectangle::new([(x, 0.0), (x + bar, pct)], color.filled()))
            });
            chart.draw_series(bars).map_err(fail("the bars"))?;
            entries.push(Series {
                label: format!("{} ({} faults)", h.label, total),
                color: PALETTE[j % PALETTE.len()],
                line: Line::None,
                marker: Marker::Square,
                width: 1,
                points: vec![],
                whiskers: vec![],
            });
        }
        draw_legend(&bottom, &entries, 2)?;
        root.present().map_err(fail("the histogram"))?;
    }
    Ok(svg)
}

fn us_text(us: u64) -> String {
    if us >= 1_000_000 {
        trim(format!("{:.1}", us as f64 / 1e6)) + "s"
    } else if us >= 1000 {
        let ms = us as f64 / 1000.0;
        trim(format!("{ms:.1}")) + "ms"
    } else {
        us.to_string()
    }
}

/// The colour of a sharing pattern in the heat map.
pub fn pattern_color(p: SharingPattern) -> (u8, u8, u8) {
    match p {
        SharingPattern::Untouched => (127, 127, 127),
        SharingPattern::ReadShared => (31, 119, 180),
        SharingPattern::Private => (44, 160, 44),
        SharingPattern::ProducerConsumer => (255, 127, 14),
        SharingPattern::WriteShared => (214, 39, 40),
    }
}

const PATTERNS: [SharingPattern; 5] = [
    SharingPattern::ReadShared,
    SharingPattern::Private,
    SharingPattern::ProducerConsumer,
    SharingPattern::WriteShared,
    SharingPattern::Untouched,
];

/// Pages per row of the heat map.
pub const HEATMAP_COLUMNS: usize = 64;
/// The heat map's right panel: the pages that cost the most messages.
pub const HEATMAP_TOP: usize = 20;

/// The page heat map of a `/pages` list: every page that cost a message, in address order,
/// `HEATMAP_COLUMNS` to a row (each row labelled with its first page's address; a gap in the
/// addresses starts a new row), coloured by sharing pattern and darker the more messages it cost
/// (logarithmic); beside it, the `HEATMAP_TOP` pages that cost the most, as bars. Pages that cost
/// nothing are left out (their count is in the caption).
pub fn page_heatmap(title: &str, pages: &[PageRow]) -> Result<String, PlotError> {
    let costly: Vec<&PageRow> = pages.iter().filter(|p| p.messages > 0).collect();
    let quiet = pages.len() - costly.len();
    // Rows: runs of at most HEATMAP_COLUMNS pages, a new row at every gap in the addresses.
    let mut rows: Vec<Vec<&PageRow>> = Vec::new();
    let mut prev: Option<u64> = None;
    for p in &costly {
        let contiguous = prev.is_some_and(|a| p.address.0 == a + crate::dsm::PAGE_SIZE);
        match rows.last_mut() {
            Some(r) if contiguous && r.len() < HEATMAP_COLUMNS => r.push(p),
            _ => rows.push(vec![p]),
        }
        prev = Some(p.address.0);
    }
    // Long maps: the rows past MAX_ROWS are summed up in the caption, not drawn.
    const MAX_ROWS: usize = 160;
    let hidden_rows = rows.len().saturating_sub(MAX_ROWS);
    rows.truncate(MAX_ROWS);
    let max = costly.iter().map(|p| p.messages).max().unwrap_or(1).max(1);
    let cell = 9i32;
    let label_w = 110i32;
    let grid_w = label_w + HEATMAP_COLUMNS as i32 * cell + 20;
    let bars_w = 430i32;
    let width = (grid_w + bars_w) as u32;
    let grid_h = rows.len() as i32 * cell;
    let bars_h = HEATMAP_TOP as i32 * 16 + 40;
    let body_h = grid_h.max(bars_h).max(120);
    let height = (70 + body_h + 60) as u32;
    let mut by_pattern: BTreeMap<SharingPattern, (usize, u64)> = BTreeMap::new();
    for p in &costly {
        let e = by_pattern.entry(p.pattern).or_default();
        e.0 += 1;
        e.1 += p.messages;
    }
    let total: u64 = costly.iter().map(|p| p.messages).sum();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(fail("the background"))?;
        let text = |size: u32| (FONT, size).into_font().color(&BLACK);
        root.draw_text(title, &text(18), (10, 8))
            .map_err(fail("the title"))?;
        let mut caption = format!(
            "{} pages cost {} messages; darker = more (log scale, darkest {max})",
            costly.len(),
            total
        );
        if quiet > 0 {
            caption.push_str(&format!("; {quiet} pages cost none (not drawn)"));
        }
        if hidden_rows > 0 {
            caption.push_str(&format!("; {hidden_rows} more rows not drawn"));
        }
        root.draw_text(&caption, &text(12), (10, 34))
            .map_err(fail("the caption"))?;
        let top = 60;
        for (r, row) in rows.iter().enumerate() {
            let y = top + r as i32 * cell;
            if r == 0
                || rows[r - 1]
                    .last()
                    .map(|p| p.address.0 + crate::dsm::PAGE_SIZE)
                    != row.first().map(|p| p.address.0)
                || r % 8 == 0
            {
                if let Some(first) = row.first() {
                    root.draw_text(&first.address.to_string(), &text(9), (6, y))
                        .map_err(fail("a row label"))?;
                }
            }
            for (c, p) in row.iter().enumerate() {
                let x = label_w + c as i32 * cell;
                let shade = shade(pattern_color(p.pattern), p.messages, max);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell - 1, y + cell - 1)],
                    rgb(shade).filled(),
                ))
                .map_err(fail("a page"))?;
            }
        }
        // The hottest pages as bars.
        let hot = crate::api::types::hottest(pages, HEATMAP_TOP);
        let bx = grid_w;
        root.draw_text("most messages", &text(13), (bx, top - 4))
            .map_err(fail("the bars"))?;
        let bar_max = (bars_w - 200) as f64;
        for (i, p) in hot.iter().enumerate() {
            let y = top + 14 + i as i32 * 16;
            root.draw_text(&p.address.to_string(), &text(10), (bx, y + 1))
                .map_err(fail("a bar"))?;
            let len = (p.messages as f64 / max as f64 * bar_max).max(1.0) as i32;
            root.draw(&Rectangle::new(
                [(bx + 92, y), (bx + 92 + len, y + 11)],
                rgb(pattern_color(p.pattern)).filled(),
            ))
            .map_err(fail("a bar"))?;
            root.draw_text(&p.messages.to_string(), &text(10), (bx + 96 + len, y + 1))
                .map_err(fail("a bar"))?;
        }
        // The legend: one chip per pattern, with its pages and messages.
        let ly = 70 + body_h + 10;
        let mut lx = 10;
        for pat in PATTERNS {
            let (n, m) = by_pattern.get(&pat).copied().unwrap_or((0, 0));
            if n == 0 && pat == SharingPattern::Untouched {
                continue;
            }
            root.draw(&Rectangle::new(
                [(lx, ly), (lx + 12, ly + 12)],
                rgb(pattern_color(pat)).filled(),
            ))
            .map_err(fail("the legend"))?;
            let label = format!("{pat}: {n} pages, {m} msgs");
            root.draw_text(&label, &text(11), (lx + 16, ly))
                .map_err(fail("the legend"))?;
            lx += 16 + (label.len() as i32) * 6 + 18;
        }
        root.present().map_err(fail("the heat map"))?;
    }
    Ok(svg)
}

/// `base` mixed with white: pale for few messages, the full colour (and darker) for the most.
fn shade(base: (u8, u8, u8), messages: u64, max: u64) -> (u8, u8, u8) {
    let t = if max <= 1 {
        1.0
    } else {
        ((messages.max(1) as f64).ln() / (max as f64).ln()).clamp(0.0, 1.0)
    };
    // t = 0: 80% white; t = 1: the colour darkened by 30%.
    let mix = |c: u8| -> u8 {
        let c = c as f64;
        let v = if t < 0.7 {
            let w = 0.8 * (1.0 - t / 0.7);
            c + (255.0 - c) * w
        } else {
            c * (1.0 - 0.3 * (t - 0.7) / 0.3)
        };
        v.round().clamp(0.0, 255.0) as u8
    };
    (mix(base.0), mix(base.1), mix(base.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{Address, Mapping, PageCopy};
    use std::collections::BTreeSet;

    fn page(address: u64, messages: u64, readers: &[usize], writers: &[usize]) -> PageRow {
        let r: BTreeSet<usize> = readers.iter().copied().collect();
        let w: BTreeSet<usize> = writers.iter().copied().collect();
        PageRow {
            address: Address(address),
            copies: vec![PageCopy {
                island: 0,
                state: "Shared".into(),
                mapping: Mapping::ReadOnly,
                waiting: 0,
                read_faults: 1,
                write_faults: 0,
                messages_received: messages,
            }],
            owner: None,
            users: vec![0, 1],
            messages,
            messages_by_type: BTreeMap::from([("fetch".to_string(), messages)]),
            readers: readers.to_vec(),
            writers: writers.to_vec(),
            pattern: SharingPattern::of(&r, &w),
        }
    }

    /// A plot is one well-formed SVG document: one root, every element closed.
    fn assert_svg(svg: &str) {
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let opened = svg.matches("<text").count();
        assert_eq!(
            opened,
            svg.matches("</text>").count(),
            "text elements closed"
        );
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn heat_map_draws_every_costly_page_and_the_hottest() {
        let mut pages = vec![page(0x1000, 0, &[], &[])];
        for i in 0..150u64 {
            pages.push(page(0x4000 + i * 4096, i % 7, &[0, 1], &[i as usize % 2]));
        }
        pages.push(page(0xfbf7fe000, 500, &[0], &[0, 1]));
        let svg = page_heatmap("test <pages>", &pages).expect("svg");
        assert_svg(&svg);
        assert!(svg.contains("test &lt;pages&gt;"));
        assert!(svg.contains("0xfbf7fe000"), "the hottest page is named");
        assert!(svg.contains("write-shared"));
        // Empty lists draw too.
        assert_svg(&page_heatmap("none", &[]).expect("svg"));
    }

    #[test]
    fn panels_with_log_and_linear_axes_and_zeros() {
        let s = |label: &str, line, pts: &[(f64, f64)]| Series {
            label: label.into(),
            color: PALETTE[0],
            line,
            marker: Marker::Circle,
            width: 2,
            points: pts.to_vec(),
            whiskers: vec![(10.0, 2.0, 8.0)],
        };
        let panels = vec![
            Panel {
                title: "<1 page, read-read".into(),
                series: vec![
                    s("a", Line::Solid, &[(1.0, 0.0), (10.0, 5.0), (90.0, 5000.0)]),
                    s("b", Line::Dashed, &[(1.0, 1.0), (90.0, 1.0)]),
                ],
            },
            Panel {
                title: "empty".into(),
                series: vec![],
            },
        ];
        for log_y in [true, false] {
            let axes = Axes {
                x_desc: "iterations".into(),
                y_desc: "messages".into(),
                log_y,
                x_ticks: None,
            };
            let svg = line_panels("fig", &panels, 2, &axes, Some("a note")).expect("svg");
            assert_svg(&svg);
            assert!(svg.contains("&lt;1 page, read-read"));
        }
        let axes = Axes {
            x_desc: "islands".into(),
            y_desc: "ms".into(),
            log_y: true,
            x_ticks: Some(vec![(0.0, "native".into()), (1.0, "1".into())]),
        };
        let svg = line_panels("npb", &panels, 1, &axes, None).expect("svg");
        assert!(
            svg.contains(">native<") || svg.contains("native\n"),
            "named tick"
        );
    }

    #[test]
    fn histogram_of_shares() {
        let h = |label: &str, counts: &[u64]| Histogram {
            label: label.into(),
            buckets: LatencyBucket::histogram(counts),
        };
        let svg = latency_histogram(
            "latency",
            &[h("one", &[0, 0, 3, 5, 0, 1]), h("two", &[0, 1, 0, 0, 0, 0])],
        )
        .expect("svg");
        assert_svg(&svg);
        assert!(svg.contains("(9 faults)"));
        assert_svg(&latency_histogram("nothing", &[]).expect("svg"));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short_number(1234.0), "1234");
        assert_eq!(short_number(12345.0), "12.3k");
        assert_eq!(short_number(2_500_000.0), "2.5M");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(3.0), "3");
        assert_eq!(us_text(2048), "2ms");
        assert_eq!(us_text(1_048_576), "1s");
        assert_eq!(us_text(64), "64");
    }
}
