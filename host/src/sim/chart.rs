//! One SVG chart per workload of a simulation: the load (in pods at full
//! utilization), and for each configuration its replicas (solid) and ready
//! pods — the capacity actually serving (dashed) — over time. Plain SVG
//! 1.1, no scripts or external references, so it renders in a browser, on
//! GitHub and in the docs as is.

use super::engine::{Setup, WorkloadRun};
use std::fmt::Write as _;

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 400;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 40.0;
/// One colour per configuration (the first is the deployed one).
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The chart of one workload under each of `runs` (label, course).
pub fn svg(workload: &str, runs: &[(&str, &WorkloadRun)], setup: &Setup) -> String {
    let end_ms = runs.iter().flat_map(|(_, r)| r.samples.last()).map(|s| s.t_ms).max().unwrap_or(0).max(1);
    let rps_per_pod = runs.first().map_or(setup.rps_per_pod, |(_, r)| r.rps_per_pod);
    let load_pods = |load: f64| load / rps_per_pod;
    let top = runs
        .iter()
        .flat_map(|(_, r)| r.samples.iter())
        .map(|s| load_pods(s.load).max(f64::from(s.replicas)))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let (plot_w, plot_h) = (f64::from(WIDTH) - LEFT - RIGHT, f64::from(HEIGHT) - TOP - BOTTOM);
    let x = |t_ms: u64| LEFT + t_ms as f64 / end_ms as f64 * plot_w;
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = write!(out, r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#, escape(workload));
    // grid and axes: five steps up, hours (or minutes) across
    let step = nice_step(top / 5.0);
    let mut v = 0.0;
    while v <= top {
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            v
        );
        v += step;
    }
    let tick_ms = [60_000u64, 300_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000]
        .into_iter()
        .find(|t| end_ms / t <= 12)
        .unwrap_or(21_600_000);
    let mut t = 0;
    while t <= end_ms {
        let label = format!("{:02}:{:02}", t / 3_600_000, (t / 60_000) % 60);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="#f0f0f0"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            x = x(t)
        );
        t += tick_ms;
    }
    let _ = write!(
        out,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">pods</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##
    );
    // the load (the same trace for every configuration: the first one's)
    if let Some((_, first)) = runs.first() {
        let points: Vec<(u64, f64)> = first.samples.iter().map(|s| (s.t_ms, load_pods(s.load))).collect();
        let _ = write!(
            out,
            r##"<polyline class="load" fill="none" stroke="#999" stroke-width="1.5" points="{}"/>"##,
            steps(&points, &x, &y)
        );
    }
    for (i, (label, run)) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let label = escape(label);
        let replicas: Vec<(u64, f64)> = run.samples.iter().map(|s| (s.t_ms, f64::from(s.replicas))).collect();
        let ready: Vec<(u64, f64)> = run.samples.iter().map(|s| (s.t_ms, f64::from(s.ready))).collect();
        let _ = write!(
            out,
            r#"<polyline class="replicas" data-config="{label}" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            steps(&replicas, &x, &y)
        );
        let _ = write!(
            out,
            r#"<polyline class="ready" data-config="{label}" fill="none" stroke="{colour}" stroke-width="1" stroke-dasharray="4 3" points="{}"/>"#,
            steps(&ready, &x, &y)
        );
    }
    // legend
    let lx = LEFT + plot_w + 16.0;
    let mut ly = TOP + 8.0;
    let _ = write!(
        out,
        r##"<line x1="{lx}" x2="{:.1}" y1="{ly}" y2="{ly}" stroke="#999" stroke-width="1.5"/><text x="{:.1}" y="{:.1}">load ({} rps/pod)</text>"##,
        lx + 22.0,
        lx + 28.0,
        ly + 4.0,
        rps_per_pod
    );
    for (i, (label, _)) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        ly += 20.0;
        let _ = write!(
            out,
            r#"<line x1="{lx}" x2="{:.1}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{} replicas</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            escape(label)
        );
        ly += 18.0;
        let _ = write!(
            out,
            r#"<line x1="{lx}" x2="{:.1}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}">{} ready</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            escape(label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A step function's points: each value holds until it changes (only the
/// changes are drawn, and the end).
fn steps(points: &[(u64, f64)], x: &dyn Fn(u64) -> f64, y: &dyn Fn(f64) -> f64) -> String {
    let mut out = String::new();
    let mut last: Option<f64> = None;
    for (t, v) in points {
        match last {
            Some(previous) if previous == *v => continue,
            Some(previous) => {
                let _ = write!(out, "{:.1},{:.1} {:.1},{:.1} ", x(*t), y(previous), x(*t), y(*v));
            }
            None => {
                let _ = write!(out, "{:.1},{:.1} ", x(*t), y(*v));
            }
        }
        last = Some(*v);
    }
    if let (Some((t, _)), Some(v)) = (points.last(), last) {
        let _ = write!(out, "{:.1},{:.1}", x(*t), y(v));
    }
    out.trim_end().to_string()
}

/// 1, 2 or 5 × a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(10.0 * power).max(1.0)
}

/// Renders charts to PNG (resvg), with the machine's fonts for the labels.
pub struct Rasterizer {
    options: resvg::usvg::Options<'static>,
}

impl Default for Rasterizer {
    fn default() -> Self {
        Rasterizer::new()
    }
}

impl Rasterizer {
    /// Loads the system fonts once; the charts' `sans-serif` is DejaVu Sans
    /// when installed, else the first family found (no font: no labels).
    pub fn new() -> Rasterizer {
        let mut options = resvg::usvg::Options::default();
        let fonts = options.fontdb_mut();
        // read once into memory: a font left on disk is opened again for
        // every label drawn (thousands of times for a hundred charts)
        let mut found = resvg::usvg::fontdb::Database::new();
        found.load_system_fonts();
        let mut paths: Vec<std::path::PathBuf> = found
            .faces()
            .filter_map(|face| match &face.source {
                resvg::usvg::fontdb::Source::File(path) => Some(path.clone()),
                _ => None,
            })
            .collect();
        paths.dedup();
        for path in paths {
            if let Ok(data) = std::fs::read(&path) {
                fonts.load_font_data(data);
            }
        }
        let family = fonts
            .faces()
            .flat_map(|face| face.families.iter().map(|(name, _)| name.clone()))
            .min_by_key(|name| name != "DejaVu Sans");
        if let Some(family) = family {
            fonts.set_sans_serif_family(family);
        }
        Rasterizer { options }
    }

    /// `svg` as a PNG of the same size.
    pub fn png(&self, svg: &str) -> Result<Vec<u8>, String> {
        let tree = resvg::usvg::Tree::from_str(svg, &self.options).map_err(|e| format!("chart SVG: {e}"))?;
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
            .ok_or_else(|| format!("cannot draw {}×{} pixels", size.width(), size.height()))?;
        resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
        pixmap.encode_png().map_err(|e| format!("PNG encoding: {e}"))
    }
}
