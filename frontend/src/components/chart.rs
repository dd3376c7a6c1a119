//! The learning curve: validation QWK and MAE per epoch, as an inline SVG line chart.

use leptos::prelude::*;

use crate::api::training::EpochPoint;
use crate::components::{format, list::CollectAny};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

/// A coordinate as SVG text (without Rust's float formatting code in the wasm).
fn n(value: f64) -> String {
    format::decimal(value, 1)
}

/// Chart coordinates of epoch `epoch` (of `0..=last`) and value `value` (of `low..=1`).
fn position(epoch: i64, last: i64, value: f64, low: f64) -> (f64, f64) {
    let x = LEFT + (WIDTH - LEFT - RIGHT) * epoch as f64 / last.max(1) as f64;
    let y = TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - (value - low) / (1.0 - low));
    (x, y)
}

/// The `points` attribute of a polyline through the values that exist.
fn polyline(
    points: &[EpochPoint],
    last: i64,
    low: f64,
    value: fn(&EpochPoint) -> Option<f64>,
) -> String {
    points
        .iter()
        .filter_map(|p| value(p).map(|v| position(p.epoch, last, v, low)))
        .map(|(x, y)| format!("{},{}", n(x), n(y)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A sentence for screen readers: the latest and the best epoch.
fn describe(points: &[EpochPoint]) -> String {
    let show = |v: Option<f64>| v.map_or("–".to_owned(), |v| format::decimal(v, 3));
    match points.last() {
        None => "No epoch has finished yet.".to_owned(),
        Some(last) => format!(
            "{} finished. Epoch {}: QWK {}, MAE {}. Best epoch so far: {}.",
            format::plural(points.len() as i64, "epoch", "epochs"),
            last.epoch,
            show(last.qwk),
            show(last.mae),
            last.best_epoch
        ),
    }
}

/// The chart for `points` (epochs in order). Kept epochs are filled dots, rejected
/// ones hollow.
pub fn learning_curve(points: Vec<EpochPoint>) -> impl IntoView {
    let last = points.iter().map(|p| p.epoch).max().unwrap_or(0).max(1);
    // QWK can be negative: extend the axis below 0 when it is.
    let lowest = points.iter().filter_map(|p| p.qwk).fold(0.0f64, f64::min);
    let low = if lowest < 0.0 { -1.0 } else { 0.0 };
    let grid = [low, (low + 1.0) / 2.0, 1.0]
        .into_iter()
        .chain((low == 0.0).then_some(0.25).into_iter().chain((low == 0.0).then_some(0.75)))
        .map(|value| {
            let (_, y) = position(0, last, value, low);
            view! {
                <line class="grid" x1=n(LEFT) x2=n(WIDTH - RIGHT) y1=n(y) y2=n(y) />
                <text class="tick" x=n(LEFT - 8.0) y=n(y + 4.0) text-anchor="end">{format::decimal(value, 2)}</text>
            }
        })
        .collect_any();
    let ticks = (0..=last)
        .filter(|epoch| last <= 12 || epoch % ((last + 11) / 12) == 0)
        .map(|epoch| {
            let (x, _) = position(epoch, last, low, low);
            view! {
                <text class="tick" x=n(x) y=n(HEIGHT - BOTTOM + 18.0) text-anchor="middle">{epoch}</text>
            }
        })
        .collect_any();
    let dots = points
        .iter()
        .flat_map(|p| {
            [(p.qwk, "qwk"), (p.mae, "mae")]
                .into_iter()
                .filter_map(move |(value, series)| value.map(|v| (p, v, series)))
        })
        .map(|(p, value, series)| {
            let (x, y) = position(p.epoch, last, value, low);
            view! {
                <circle
                    class=format!("dot {series}{}", if p.kept { " kept" } else { "" })
                    cx=n(x)
                    cy=n(y)
                    r="4.5"
                    data-testid="epoch-point"
                    data-series=series
                    data-epoch=p.epoch
                >
                    <title>
                        {format!(
                            "Epoch {}: {} {} ({})",
                            p.epoch,
                            series.to_uppercase(),
                            format::decimal(value, 3),
                            if p.kept { "kept" } else { "rejected" }
                        )}
                    </title>
                </circle>
            }
        })
        .collect_any();
    let qwk = polyline(&points, last, low, |p| p.qwk);
    let mae = polyline(&points, last, low, |p| p.mae);
    view! {
        <figure class="chart" data-testid="epoch-chart" data-points=points.len()>
            <svg
                viewBox=format!("0 0 {} {}", n(WIDTH), n(HEIGHT))
                role="img"
                aria-labelledby="chart-title chart-desc"
                preserveAspectRatio="xMidYMid meet"
            >
                <title id="chart-title">"Validation agreement per epoch"</title>
                <desc id="chart-desc">{describe(&points)}</desc>
                {grid}
                {ticks}
                <text class="axis-label" x=n((LEFT + WIDTH - RIGHT) / 2.0) y=n(HEIGHT - 4.0) text-anchor="middle">
                    "Epoch"
                </text>
                <polyline class="line qwk" points=qwk />
                <polyline class="line mae" points=mae />
                {dots}
            </svg>
            <figcaption class="legend">
                <span class="key qwk">"QWK (higher is better)"</span>
                <span class="key mae">"MAE (lower is better)"</span>
                <span class="muted">"Filled: change kept · hollow: rejected"</span>
            </figcaption>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(epoch: i64, qwk: Option<f64>) -> EpochPoint {
        EpochPoint {
            epoch,
            qwk,
            mae: Some(0.2),
            exact: None,
            kept: true,
            change: String::new(),
            tokens: 0,
            best_epoch: epoch,
        }
    }

    #[test]
    fn positions_span_the_plot_area() {
        assert_eq!(position(0, 4, 1.0, 0.0), (LEFT, TOP));
        assert_eq!(position(4, 4, 0.0, 0.0), (WIDTH - RIGHT, HEIGHT - BOTTOM));
        assert_eq!(position(0, 4, -1.0, -1.0).1, HEIGHT - BOTTOM);
    }

    #[test]
    fn lines_skip_missing_values() {
        let points = [point(0, Some(0.5)), point(1, None), point(2, Some(1.0))];
        assert_eq!(polyline(&points, 2, 0.0, |p| p.qwk).split(' ').count(), 2);
        assert_eq!(polyline(&points, 2, 0.0, |p| p.mae).split(' ').count(), 3);
    }

    #[test]
    fn describes_the_latest_epoch() {
        assert_eq!(describe(&[]), "No epoch has finished yet.");
        let text = describe(&[point(0, Some(0.5)), point(1, Some(0.625))]);
        assert!(
            text.starts_with("2 epochs finished. Epoch 1: QWK 0.625"),
            "{text}"
        );
    }
}
