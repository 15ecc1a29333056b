//! The report's figures, drawn once for a PNG (bitmap backend) and once for an SVG.
//!
//! Every text is set in the embedded DejaVu Sans, registered with plotters as `sans-serif`.
//! Legends sit in their own column to the right of the plot, so they never cover data.

use std::path::{Path, PathBuf};
use std::sync::Once;

use fadlora_run::write_atomic;
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::glyphs::GlyphText;
use crate::ReportError;

pub(crate) const WIDTH: u32 = 1280;
pub(crate) const HEIGHT: u32 = 800;

const FAMILY: &str = "sans-serif";
/// plotters sizes are 1.24 x the CSS pixel size the SVG backend writes: 20 => 16 px.
const CAPTION_SIZE: u32 = 30;
const AXIS_SIZE: u32 = 24;
const TICK_SIZE: u32 = 20;
const LEGEND_SIZE: u32 = 21;

pub(crate) static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER_FONT: Once = Once::new();

/// Registers the embedded DejaVu Sans as `sans-serif` (once per process).
pub(crate) fn ensure_font() {
    REGISTER_FONT.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font(FAMILY, style, FONT_BYTES)
                .unwrap_or_else(|_| panic!("the embedded DejaVu Sans is a valid TrueType font"));
        }
    });
}

fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font()).color(&BLACK)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Tableau 10: distinguishable, and readable on white.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Full fine-tuning.
pub(crate) const FULL_COLORS: [RGBColor; 3] = [
    RGBColor(0, 0, 0),
    RGBColor(90, 90, 90),
    RGBColor(150, 150, 150),
];
/// (IA)^3: a teal apart from the palette, the probes and the greys.
pub(crate) const IA3_COLOR: RGBColor = RGBColor(0, 150, 136);
/// Adapter layers: a dark gold apart from the palette, the probes and the greys.
pub(crate) const ADAPTER_COLOR: RGBColor = RGBColor(170, 130, 0);
/// Partial fine-tuning: a brown apart from the palette, the probes, the greys and the gold.
pub(crate) const PARTIAL_COLOR: RGBColor = RGBColor(140, 70, 20);
/// Layer sums: a violet apart from the palette, the probes, the greys, the gold and the brown.
pub(crate) const LAYER_SUM_COLOR: RGBColor = RGBColor(110, 60, 170);
/// The SLS head on a frozen front end: a crimson apart from the palette and the other methods.
pub(crate) const SLS_COLOR: RGBColor = RGBColor(200, 20, 80);
/// Frozen-feature probes: dark shades apart from the palette's LoRA lines and the greys of
/// full fine-tuning.
pub(crate) const PROBE_COLORS: [RGBColor; 4] = [
    RGBColor(128, 0, 64),
    RGBColor(0, 90, 70),
    RGBColor(90, 60, 0),
    RGBColor(40, 40, 130),
];

pub(crate) trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Draws `figure` into `<dir>/<stem>.png` and `<dir>/<stem>.svg` (each written to a temporary
/// file first, then renamed) and returns both paths.
pub(crate) fn save_figure<F: Figure>(
    figure: &F,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    ensure_font();
    let png = dir.join(format!("{stem}.png"));
    let tmp = dir.join(format!(".{stem}.{}.tmp.png", std::process::id()));
    let drawn = (|| {
        let root = GlyphText::new(BitMapBackend::new(&tmp, (WIDTH, HEIGHT))).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        figure.draw(&root)?;
        root.present().map_err(err)
    })();
    if let Err(message) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(ReportError::Figure { path: png, message });
    }
    std::fs::rename(&tmp, &png).map_err(|e| ReportError::io(&png, e))?;

    let svg_path = dir.join(format!("{stem}.svg"));
    let mut svg = String::new();
    {
        let drawn = (|| {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            figure.draw(&root)?;
            root.present().map_err(err)
        })();
        drawn.map_err(|message| ReportError::Figure {
            path: svg_path.clone(),
            message,
        })?;
    }
    write_atomic(&svg_path, svg.as_bytes())?;
    Ok(vec![png, svg_path])
}

/// A linear f64 axis whose ticks are exactly `keys` (already transformed values: log2 of a
/// rank, log10 of a count, a normal deviate), labelled by the mesh's formatter.
#[derive(Debug, Clone)]
struct KeyAxis {
    lo: f64,
    hi: f64,
    keys: Vec<f64>,
}

impl KeyAxis {
    fn new(lo: f64, hi: f64, keys: Vec<f64>) -> Self {
        KeyAxis { lo, hi, keys }
    }
}

impl Ranged for KeyAxis {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        if (self.hi - self.lo).abs() < f64::EPSILON {
            return (limit.0 + limit.1) / 2;
        }
        let t = (v - self.lo) / (self.hi - self.lo);
        limit.0 + ((limit.1 - limit.0) as f64 * t).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

// ---------------------------------------------------------------------------------------------
// Legend

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Marker {
    Circle,
    Triangle,
    /// Frozen-feature probes.
    Square,
    /// (IA)^3.
    Diamond,
    /// Adapter layers.
    InvertedTriangle,
    /// Partial fine-tuning.
    Plus,
    /// Layer sums.
    Hexagon,
    /// The SLS head on a frozen front end.
    Star,
    /// Mixtures of LoRA experts (an x).
    Cross,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Glyph {
    Marker(Marker, bool),
    Dashed,
    Line,
}

struct LegendEntry {
    label: String,
    color: RGBColor,
    glyph: Glyph,
}

fn legend_width<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, entries: &[LegendEntry]) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    let widest = entries
        .iter()
        .map(|e| {
            root.estimate_text_size(&e.label, &font(LEGEND_SIZE))
                .map(|(w, _)| w)
                .unwrap_or(e.label.len() as u32 * LEGEND_SIZE / 2)
        })
        .max()
        .unwrap_or(0);
    (widest + 100).min(root.dim_in_pixel().0 * 2 / 5)
}

fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    marker: Marker,
    color: RGBColor,
) -> Result<(), String> {
    match marker {
        Marker::Circle => area.draw(&Circle::new(at, 7, color.filled())).map_err(err),
        Marker::Triangle => area
            .draw(&TriangleMarker::new(at, 12, color.filled()))
            .map_err(err),
        Marker::Square => area
            .draw(&Rectangle::new(
                [(at.0 - 6, at.1 - 6), (at.0 + 6, at.1 + 6)],
                color.filled(),
            ))
            .map_err(err),
        Marker::Diamond => area
            .draw(&Polygon::new(
                vec![
                    (at.0, at.1 - 9),
                    (at.0 + 9, at.1),
                    (at.0, at.1 + 9),
                    (at.0 - 9, at.1),
                ],
                color.filled(),
            ))
            .map_err(err),
        Marker::InvertedTriangle => area
            .draw(&Polygon::new(
                vec![(at.0 - 8, at.1 - 6), (at.0 + 8, at.1 - 6), (at.0, at.1 + 9)],
                color.filled(),
            ))
            .map_err(err),
        Marker::Hexagon => area
            .draw(&Polygon::new(
                vec![
                    (at.0 - 4, at.1 - 7),
                    (at.0 + 4, at.1 - 7),
                    (at.0 + 8, at.1),
                    (at.0 + 4, at.1 + 7),
                    (at.0 - 4, at.1 + 7),
                    (at.0 - 8, at.1),
                ],
                color.filled(),
            ))
            .map_err(err),
        Marker::Plus => area
            .draw(&Polygon::new(
                vec![
                    (at.0 - 3, at.1 - 8),
                    (at.0 + 3, at.1 - 8),
                    (at.0 + 3, at.1 - 3),
                    (at.0 + 8, at.1 - 3),
                    (at.0 + 8, at.1 + 3),
                    (at.0 + 3, at.1 + 3),
                    (at.0 + 3, at.1 + 8),
                    (at.0 - 3, at.1 + 8),
                    (at.0 - 3, at.1 + 3),
                    (at.0 - 8, at.1 + 3),
                    (at.0 - 8, at.1 - 3),
                    (at.0 - 3, at.1 - 3),
                ],
                color.filled(),
            ))
            .map_err(err),
        Marker::Star => area
            .draw(&Polygon::new(
                vec![
                    (at.0, at.1 - 10),
                    (at.0 + 2, at.1 - 3),
                    (at.0 + 10, at.1 - 3),
                    (at.0 + 4, at.1 + 1),
                    (at.0 + 6, at.1 + 8),
                    (at.0, at.1 + 4),
                    (at.0 - 6, at.1 + 8),
                    (at.0 - 4, at.1 + 1),
                    (at.0 - 10, at.1 - 3),
                    (at.0 - 2, at.1 - 3),
                ],
                color.filled(),
            ))
            .map_err(err),
        Marker::Cross => {
            for (from, to) in [
                ((at.0 - 7, at.1 - 7), (at.0 + 7, at.1 + 7)),
                ((at.0 - 7, at.1 + 7), (at.0 + 7, at.1 - 7)),
            ] {
                area.draw(&PathElement::new(vec![from, to], color.stroke_width(4)))
                    .map_err(err)?;
            }
            Ok(())
        }
    }
}

/// A vertical error bar between two backend points, with 16 px caps.
fn draw_error_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    low: (i32, i32),
    high: (i32, i32),
    color: RGBColor,
) -> Result<(), String> {
    let style = color.stroke_width(2);
    for path in [
        vec![low, high],
        vec![(low.0 - 8, low.1), (low.0 + 8, low.1)],
        vec![(high.0 - 8, high.1), (high.0 + 8, high.1)],
    ] {
        area.draw(&PathElement::new(path, style)).map_err(err)?;
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<(), String> {
    let top = 90;
    let step = (LEGEND_SIZE as i32 * 7) / 4;
    for (i, entry) in entries.iter().enumerate() {
        let y = top + i as i32 * step;
        let (x0, x1) = (12, 58);
        let color = entry.color;
        match entry.glyph {
            Glyph::Marker(marker, with_line) => {
                if with_line {
                    area.draw(&PathElement::new(
                        vec![(x0, y), (x1, y)],
                        color.stroke_width(3),
                    ))
                    .map_err(err)?;
                }
                draw_marker(area, ((x0 + x1) / 2, y), marker, color)?;
            }
            Glyph::Dashed => {
                area.draw(&DashedPathElement::new(
                    vec![(x0, y), (x1, y)],
                    10,
                    6,
                    color.stroke_width(3),
                ))
                .map_err(err)?;
            }
            Glyph::Line => {
                area.draw(&PathElement::new(
                    vec![(x0, y), (x1, y)],
                    color.stroke_width(3),
                ))
                .map_err(err)?;
            }
        }
        area.draw(&Text::new(
            entry.label.clone(),
            (x1 + 14, y),
            font(LEGEND_SIZE).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Splits off a legend column on the right when there are entries.
fn with_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<DrawingArea<DB, Shift>, String> {
    let width = legend_width(root, entries);
    if width == 0 {
        return Ok(root.clone());
    }
    let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0 - width);
    draw_legend(&legend, entries)?;
    Ok(plot)
}

// ---------------------------------------------------------------------------------------------
// EER against a swept quantity

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum XScale {
    /// LoRA rank: log2 axis, ticks at powers of two and at every rank present.
    Log2,
    /// Parameter counts: log10 axis, ticks at 1, 2, 5 x 10^k.
    Log10,
    /// Ticks at every value present.
    Linear,
    /// From 0, ticks at a round step (1, 2 or 5 x 10^k): quantities such as memory, whose
    /// values are too close together to label each.
    LinearFromZero,
}

impl XScale {
    fn to_axis(self, x: f64) -> f64 {
        match self {
            XScale::Log2 => x.log2(),
            XScale::Log10 => x.log10(),
            XScale::Linear | XScale::LinearFromZero => x,
        }
    }

    fn label(self, v: f64) -> String {
        match self {
            XScale::Log2 => trim_number(2f64.powf(v), 1),
            XScale::Log10 => human_count(10f64.powf(v)),
            XScale::Linear => trim_number(v, 2),
            XScale::LinearFromZero => trim_number(v, 0),
        }
    }
}

/// `4`, `2.5`: at most `decimals` decimals, trailing zeros dropped.
pub(crate) fn trim_number(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// `500`, `2k`, `1.5M`, `300M`, `1G`.
pub(crate) fn human_count(n: f64) -> String {
    let n = (n * 1000.0).round() / 1000.0;
    for (scale, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if n.abs() >= scale {
            return format!("{}{suffix}", trim_number(n / scale, 1));
        }
    }
    trim_number(n, 1)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub x: f64,
    pub y: f64,
    pub err: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub label: String,
    pub color: RGBColor,
    pub marker: Marker,
    pub connect: bool,
    pub points: Vec<Point>,
}

/// A reference level across the whole x range (dashed), with a shaded ± band.
#[derive(Debug, Clone)]
pub(crate) struct HLine {
    pub label: String,
    pub color: RGBColor,
    pub y: f64,
    pub err: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct XyFigure {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_scale: XScale,
    pub series: Vec<Series>,
    pub hlines: Vec<HLine>,
}

impl XyFigure {
    fn x_range_and_keys(&self) -> (f64, f64, Vec<f64>) {
        let mut xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| self.x_scale.to_axis(p.x)))
            .filter(|x| x.is_finite())
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let (lo, hi) = match (xs.first(), xs.last()) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (0.0, 1.0),
        };
        let span = hi - lo;
        let pad = match self.x_scale {
            XScale::Log2 if span < 1e-9 => 1.0,
            XScale::Log2 => 0.4,
            XScale::Log10 if span < 1e-9 => 0.5,
            XScale::Log10 => (0.08 * span).max(0.2),
            XScale::Linear if span < 1e-9 => 0.5 * lo.abs().max(1.0),
            XScale::Linear => 0.1 * span,
            XScale::LinearFromZero => 0.1 * hi.abs().max(1e-9),
        };
        let (lo, hi) = match self.x_scale {
            XScale::LinearFromZero => (0.0, hi + pad),
            _ => (lo - pad, hi + pad),
        };
        let mut keys: Vec<f64> = match self.x_scale {
            XScale::Log2 => {
                let mut k: Vec<f64> = (lo.ceil() as i64..=hi.floor() as i64)
                    .map(|e| e as f64)
                    .collect();
                k.extend(&xs);
                k
            }
            XScale::Log10 => {
                let decades = lo.floor() as i64..=hi.ceil() as i64;
                let mantissas: &[f64] = if hi - lo > 4.0 {
                    &[1.0]
                } else {
                    &[1.0, 2.0, 5.0]
                };
                decades
                    .flat_map(|e| mantissas.iter().map(move |m| m.log10() + e as f64))
                    .filter(|v| *v >= lo && *v <= hi)
                    .collect()
            }
            XScale::Linear => xs.clone(),
            XScale::LinearFromZero => {
                let raw = hi / 6.0;
                let magnitude = 10f64.powf(raw.log10().floor());
                let step = [1.0, 2.0, 5.0, 10.0]
                    .iter()
                    .map(|m| m * magnitude)
                    .find(|s| *s >= raw)
                    .unwrap_or(10.0 * magnitude);
                (0..)
                    .map(|i| i as f64 * step)
                    .take_while(|v| *v <= hi)
                    .collect()
            }
        };
        keys.sort_by(f64::total_cmp);
        keys.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
        (lo, hi, keys)
    }

    fn y_top(&self) -> f64 {
        let tops = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.y + p.err.unwrap_or(0.0)))
            .chain(self.hlines.iter().map(|h| h.y + h.err.unwrap_or(0.0)));
        let max = tops.filter(|v| v.is_finite()).fold(0.0, f64::max);
        if max <= 0.0 {
            1.0
        } else {
            max * 1.15
        }
    }

    /// Horizontal offsets (axis units) that keep the error bars of series sharing an x
    /// value apart; all zero when no two series share one.
    fn dodge(&self, span: f64) -> Vec<f64> {
        let n = self.series.len();
        let mut xs: Vec<i64> = Vec::new();
        let mut shared = false;
        for s in &self.series {
            let mut own: Vec<i64> = s
                .points
                .iter()
                .map(|p| (self.x_scale.to_axis(p.x) * 1e6).round() as i64)
                .collect();
            own.sort_unstable();
            own.dedup();
            shared |= own.iter().any(|x| xs.contains(x));
            xs.extend(own);
        }
        if !shared {
            return vec![0.0; n];
        }
        let step = (0.12 * span / n as f64).min(0.015 * span);
        (0..n)
            .map(|i| (i as f64 - (n as f64 - 1.0) / 2.0) * step)
            .collect()
    }

    fn legend(&self) -> Vec<LegendEntry> {
        let mut entries: Vec<LegendEntry> = self
            .series
            .iter()
            .map(|s| LegendEntry {
                label: s.label.clone(),
                color: s.color,
                glyph: Glyph::Marker(s.marker, s.connect && s.points.len() > 1),
            })
            .collect();
        entries.extend(self.hlines.iter().map(|h| LegendEntry {
            label: h.label.clone(),
            color: h.color,
            glyph: Glyph::Dashed,
        }));
        entries
    }
}

/// A chart on `area` with `x` below (labelled by `x_label`), y from 0 to `top`, and the house
/// grid and fonts: what every line and curve figure starts from.
fn key_axis_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    (caption, caption_size): (&str, u32),
    x: KeyAxis,
    top: f64,
    (x_desc, y_desc): (&str, &str),
    x_label: &dyn Fn(&f64) -> String,
) -> Result<
    ChartContext<'a, DB, Cartesian2d<KeyAxis, plotters::coord::types::RangedCoordf64>>,
    String,
> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(caption_size))
        .margin(20)
        .x_label_area_size(80)
        .y_label_area_size(100)
        .build_cartesian_2d(x, 0f64..top)
        .map_err(err)?;
    let y_label = |v: &f64| trim_number(*v, 2);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style(font(AXIS_SIZE))
        .label_style(font(TICK_SIZE))
        .x_label_formatter(x_label)
        .y_label_formatter(&y_label)
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(242, 242, 242))
        .max_light_lines(1)
        .draw()
        .map_err(err)?;
    Ok(chart)
}

impl Figure for XyFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let plot = with_legend(root, &self.legend())?;
        let (lo, hi, keys) = self.x_range_and_keys();
        let top = self.y_top();
        let scale = self.x_scale;
        let mut chart = key_axis_chart(
            &plot,
            (&self.title, CAPTION_SIZE),
            KeyAxis::new(lo, hi, keys),
            top,
            (&self.x_desc, &self.y_desc),
            &|v: &f64| scale.label(*v),
        )?;

        for h in &self.hlines {
            if let Some(e) = h.err.filter(|e| *e > 0.0) {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(lo, (h.y - e).max(0.0)), (hi, h.y + e)],
                        h.color.mix(0.10).filled(),
                    )))
                    .map_err(err)?;
            }
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(lo, h.y), (hi, h.y)],
                    14,
                    8,
                    h.color.stroke_width(3),
                ))
                .map_err(err)?;
        }
        let dodge = self.dodge(hi - lo);
        for (s, shift) in self.series.iter().zip(dodge) {
            let mut pts: Vec<(f64, Point)> = s
                .points
                .iter()
                .map(|p| (scale.to_axis(p.x) + shift, *p))
                .filter(|(x, p)| x.is_finite() && p.y.is_finite())
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if s.connect && pts.len() > 1 {
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().map(|(x, p)| (*x, p.y)),
                        s.color.stroke_width(3),
                    ))
                    .map_err(err)?;
            }
            for (x, p) in &pts {
                if let Some(e) = p.err.filter(|e| *e > 0.0) {
                    let low = chart.backend_coord(&(*x, (p.y - e).max(0.0)));
                    let high = chart.backend_coord(&(*x, p.y + e));
                    draw_error_bar(root, low, high, s.color)?;
                }
            }
            for (x, p) in &pts {
                let at = chart.backend_coord(&(*x, p.y));
                draw_marker(root, at, s.marker, s.color)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Bars: one bar per group, one panel per quantity

#[derive(Debug, Clone)]
pub(crate) struct BarPanel {
    pub title: String,
    pub y_desc: String,
    pub values: Vec<Option<f64>>,
    pub decimals: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct BarsFigure {
    pub names: Vec<String>,
    pub colors: Vec<RGBColor>,
    pub panels: Vec<BarPanel>,
}

impl BarsFigure {
    fn draw_panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        area: &DrawingArea<DB, Shift>,
        panel: &BarPanel,
    ) -> Result<(), String> {
        let n = self.names.len();
        let (w, h) = area.dim_in_pixel();
        let label_font = font(TICK_SIZE);
        let sizes: Vec<(u32, u32)> = self
            .names
            .iter()
            .map(|name| area.estimate_text_size(name, &label_font).map_err(err))
            .collect::<Result<_, _>>()?;
        let widest = sizes.iter().map(|s| s.0).max().unwrap_or(0);
        let tallest = sizes.iter().map(|s| s.1).max().unwrap_or(TICK_SIZE);
        let (margin, y_area) = (20u32, 100u32);
        let slot = w.saturating_sub(2 * margin + y_area) / n.max(1) as u32;
        let rotate = widest + 12 > slot;
        let x_area = if rotate {
            (widest + 40).min(h / 2)
        } else {
            tallest + 50
        };
        let top = panel
            .values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.18 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, font(CAPTION_SIZE - 4))
            .margin(margin)
            .x_label_area_size(x_area)
            .y_label_area_size(y_area)
            .build_cartesian_2d(
                KeyAxis::new(-0.5, n as f64 - 0.5, (0..n).map(|i| i as f64).collect()),
                0f64..top,
            )
            .map_err(err)?;
        let y_fmt = |v: &f64| trim_number(*v, 2);
        let no_label = |_: &f64| String::new();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(&panel.y_desc)
            .axis_desc_style(font(AXIS_SIZE))
            .label_style(font(TICK_SIZE))
            .x_label_formatter(&no_label)
            .y_label_formatter(&y_fmt)
            .bold_line_style(RGBColor(215, 215, 215))
            .light_line_style(RGBColor(242, 242, 242))
            .max_light_lines(1)
            .draw()
            .map_err(err)?;
        let half = 0.36;
        for (i, value) in panel.values.iter().enumerate() {
            let x = i as f64;
            let color = self.colors.get(i).copied().unwrap_or(PALETTE[0]);
            match value.filter(|v| v.is_finite()) {
                Some(v) => {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x - half, 0.0), (x + half, v)],
                            color.filled(),
                        )))
                        .map_err(err)?;
                    let text = format!("{v:.prec$}", prec = panel.decimals);
                    let value_font = font(TICK_SIZE);
                    let tw = area.estimate_text_size(&text, &value_font).map_err(err)?.0;
                    if tw + 4 <= slot {
                        let (px, py) = chart.backend_coord(&(x, v));
                        root.draw(&Text::new(
                            text,
                            (px, py - 6),
                            value_font.pos(Pos::new(HPos::Center, VPos::Bottom)),
                        ))
                        .map_err(err)?;
                    }
                }
                None => {
                    let (px, py) = chart.backend_coord(&(x, 0.0));
                    root.draw(&Text::new(
                        "n/a".to_string(),
                        (px, py - 8),
                        font(TICK_SIZE).pos(Pos::new(HPos::Center, VPos::Bottom)),
                    ))
                    .map_err(err)?;
                }
            }
            let (px, py) = chart.backend_coord(&(x, 0.0));
            let style = if rotate {
                label_font
                    .clone()
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Right, VPos::Center))
            } else {
                label_font.clone().pos(Pos::new(HPos::Center, VPos::Top))
            };
            root.draw(&Text::new(self.names[i].clone(), (px, py + 12), style))
                .map_err(err)?;
        }
        Ok(())
    }
}

impl Figure for BarsFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let areas = root.split_evenly((1, self.panels.len().max(1)));
        for (area, panel) in areas.iter().zip(&self.panels) {
            self.draw_panel(root, area, panel)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// DET curves on normal-deviate axes

/// The standard normal quantile function (Acklam's rational approximation, relative error
/// below 1.2e-9), with `p` clamped into (0, 1).
pub(crate) fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const P_LOW: f64 = 0.02425;
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// Tick positions of a DET axis, as fractions.
const DET_TICKS: [f64; 15] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99,
];

#[derive(Debug, Clone)]
pub(crate) struct DetData {
    pub label: String,
    pub color: RGBColor,
    /// Spoof acceptance rate (fraction), per threshold.
    pub far: Vec<f64>,
    /// Bona fide rejection rate (fraction), per threshold.
    pub frr: Vec<f64>,
    /// Equal error rate (fraction).
    pub eer: f64,
    pub n_bonafide: usize,
    pub n_spoof: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct DetFigure {
    pub title: String,
    pub curves: Vec<DetData>,
}

impl DetFigure {
    /// The axis range, as rates: from half the coarsest rate step (at least 0.1 %, snapped
    /// down to a tick) to 50 % (95 % when some curve's EER is above 30 %).
    fn range(&self) -> (f64, f64) {
        let n = self
            .curves
            .iter()
            .map(|c| c.n_bonafide.min(c.n_spoof).max(1))
            .min()
            .unwrap_or(1000);
        let want = (0.5 / n as f64).max(0.001);
        let lo = DET_TICKS
            .iter()
            .copied()
            .rev()
            .find(|t| *t <= want + 1e-12)
            .unwrap_or(0.001);
        let worst = self.curves.iter().map(|c| c.eer).fold(0.0, f64::max);
        let hi = if worst > 0.3 { 0.95 } else { 0.5 };
        (lo, hi)
    }
}

impl Figure for DetFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let entries: Vec<LegendEntry> = self
            .curves
            .iter()
            .map(|c| LegendEntry {
                label: c.label.clone(),
                color: c.color,
                glyph: Glyph::Line,
            })
            .chain(std::iter::once(LegendEntry {
                label: "EER (miss = false accept)".into(),
                color: RGBColor(160, 160, 160),
                glyph: Glyph::Dashed,
            }))
            .collect();
        let plot = with_legend(root, &entries)?;
        let (lo, hi) = self.range();
        let ticks: Vec<(f64, String)> = DET_TICKS
            .iter()
            .filter(|t| **t >= lo - 1e-12 && **t <= hi + 1e-12)
            .map(|t| (probit(*t), trim_number(t * 100.0, 1)))
            .collect();
        let keys: Vec<f64> = ticks.iter().map(|t| t.0).collect();
        let (plo, phi) = (probit(lo), probit(hi));
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, font(CAPTION_SIZE))
            .margin(20)
            .x_label_area_size(80)
            .y_label_area_size(100)
            .build_cartesian_2d(
                KeyAxis::new(plo, phi, keys.clone()),
                KeyAxis::new(plo, phi, keys),
            )
            .map_err(err)?;
        let tick_label = |v: &f64| {
            ticks
                .iter()
                .min_by(|a, b| (a.0 - v).abs().total_cmp(&(b.0 - v).abs()))
                .map(|t| t.1.clone())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_desc("Spoof false acceptance rate (%)")
            .y_desc("Bona fide miss rate (%)")
            .axis_desc_style(font(AXIS_SIZE))
            .label_style(font(TICK_SIZE))
            .x_label_formatter(&tick_label)
            .y_label_formatter(&tick_label)
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(plo, plo), (phi, phi)],
                10,
                6,
                RGBColor(160, 160, 160).stroke_width(2),
            ))
            .map_err(err)?;
        let axis = |rate: f64| probit(rate.clamp(lo, hi));
        for c in &self.curves {
            let mut pts: Vec<(f64, f64)> = c
                .far
                .iter()
                .zip(&c.frr)
                .map(|(&far, &frr)| (axis(far), axis(frr)))
                .collect();
            pts.dedup_by(|a, b| (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9);
            chart
                .draw_series(LineSeries::new(pts, c.color.stroke_width(3)))
                .map_err(err)?;
            let at = chart.backend_coord(&(axis(c.eer), axis(c.eer)));
            draw_marker(root, at, Marker::Circle, c.color)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probit_matches_known_quantiles() {
        assert!(probit(0.5).abs() < 1e-9);
        assert!((probit(0.975) - 1.959_963_985).abs() < 1e-6);
        assert!((probit(0.01) + 2.326_347_874).abs() < 1e-6);
        assert!((probit(0.999) - 3.090_232_306).abs() < 1e-6);
        assert!((probit(0.2) + probit(0.8)).abs() < 1e-9);
    }

    #[test]
    fn axis_labels() {
        assert_eq!(human_count(1_000_000.0), "1M");
        assert_eq!(human_count(2_000.0), "2k");
        assert_eq!(human_count(500.0), "500");
        assert_eq!(human_count(94_400_000.0), "94.4M");
        assert_eq!(XScale::Log2.label(2.0), "4");
        assert_eq!(XScale::Log2.label(3f64.log2()), "3");
        assert_eq!(trim_number(2.0, 2), "2");
        assert_eq!(trim_number(4.0375, 2), "4.04");
    }
}

// ---------------------------------------------------------------------------------------------
// Per-epoch curves: panels sharing the epoch axis, one line per run

#[derive(Debug, Clone)]
pub(crate) struct CurveLine {
    pub color: RGBColor,
    /// `(epoch, value)`.
    pub points: Vec<(f64, f64)>,
    /// The epoch whose checkpoint the run kept, ringed.
    pub selected: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct CurvePanel {
    pub title: String,
    pub y_desc: String,
    pub lines: Vec<CurveLine>,
}

#[derive(Debug, Clone)]
pub(crate) struct CurvesFigure {
    pub x_desc: String,
    pub panels: Vec<CurvePanel>,
    /// One entry per colour: runs of a group share it.
    pub legend: Vec<(String, RGBColor)>,
}

impl CurvesFigure {
    /// Epoch ticks: every epoch up to ten, else about ten evenly spaced.
    fn x_range_and_keys(&self) -> (f64, f64, Vec<f64>) {
        let last = self
            .panels
            .iter()
            .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter().map(|q| q.0)))
            .fold(1.0, f64::max);
        let step = (last / 10.0).ceil().max(1.0);
        let keys = (0..)
            .map(|i| 1.0 + i as f64 * step)
            .take_while(|k| *k <= last + 1e-9)
            .collect();
        let pad = (0.04 * (last - 1.0)).max(0.25);
        (1.0 - pad, last + pad, keys)
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        area: &DrawingArea<DB, Shift>,
        panel: &CurvePanel,
    ) -> Result<(), String> {
        let (lo, hi, keys) = self.x_range_and_keys();
        let top = panel
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.1 } else { 1.0 };
        let mut chart = key_axis_chart(
            area,
            (&panel.title, CAPTION_SIZE - 4),
            KeyAxis::new(lo, hi, keys),
            top,
            (&self.x_desc, &panel.y_desc),
            &|v: &f64| trim_number(*v, 0),
        )?;
        for line in &panel.lines {
            let points: Vec<(f64, f64)> = line
                .points
                .iter()
                .copied()
                .filter(|p| p.1.is_finite())
                .collect();
            // Seeds of a group overlap: a lighter line keeps each one visible.
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    line.color.mix(0.75).stroke_width(2),
                ))
                .map_err(err)?;
            for p in &points {
                let at = chart.backend_coord(p);
                root.draw(&Circle::new(at, 3, line.color.filled()))
                    .map_err(err)?;
                if line.selected == Some(p.0) {
                    root.draw(&Circle::new(at, 8, line.color.stroke_width(2)))
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }
}

impl Figure for CurvesFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let entries: Vec<LegendEntry> = self
            .legend
            .iter()
            .map(|(label, color)| LegendEntry {
                label: label.clone(),
                color: *color,
                glyph: Glyph::Line,
            })
            .collect();
        let plot = with_legend(root, &entries)?;
        let (plot, footer) = plot.split_vertically(plot.dim_in_pixel().1 - 36);
        footer
            .draw(&Text::new(
                "Rings: the epoch each run kept (best by its selection metric)".to_string(),
                (120, 4),
                font(LEGEND_SIZE - 3).pos(Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(err)?;
        let areas = plot.split_evenly((1, self.panels.len().max(1)));
        for (area, panel) in areas.iter().zip(&self.panels) {
            self.draw_panel(root, area, panel)?;
        }
        Ok(())
    }
}
