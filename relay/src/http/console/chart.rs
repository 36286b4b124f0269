//! The overview's chart of a system's last hour: one bar per minute, its height
//! the calls that finished in that minute, its lower part (in the error colour)
//! the ones that failed or expired (see `queue::activity` for what counts).
//! Drawn as inline SVG on the server: no script, no `style` attribute (the
//! console's Content-Security-Policy allows neither), colours from the
//! stylesheet's classes. Screen readers get the figures from the SVG's title and
//! description and from a visually hidden table of the minutes with calls.

use std::collections::BTreeMap;

use maud::{Markup, html};
use time::OffsetDateTime;

use crate::queue::activity::CallMinute;

/// Minutes the chart shows, the current one last.
pub(super) const MINUTES: i64 = 60;
/// The SVG's size and the plot area inside it.
const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 130.0;
const LEFT: f64 = 36.0;
const TOP: f64 = 10.0;
const PLOT_HEIGHT: f64 = 96.0;
/// Each minute's slot, and the bar in it.
const SLOT: f64 = 6.0;
const BAR: f64 = 5.0;
/// The least height of a bar or its error part that stands for any call, so a
/// single error beside hundreds of calls still shows.
const MIN_VISIBLE: f64 = 1.0;

/// One minute's bar: its slot (0 the oldest, [`MINUTES`]` - 1` the current
/// minute), its figures and its heights in the plot.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bar {
    pub(super) slot: i64,
    pub(super) minute: i64,
    pub(super) finished: u64,
    pub(super) errors: u64,
    /// The whole bar's height.
    pub(super) height: f64,
    /// The height of its error part (at the bottom of the bar).
    pub(super) error_height: f64,
}

/// What one system's chart shows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Hour {
    /// The bars of the minutes with calls, oldest first.
    pub(super) bars: Vec<Bar>,
    /// The top of the scale: the most calls of any minute (at least 1).
    pub(super) top: u64,
    /// Calls finished in the hour, and of those errors.
    pub(super) finished: u64,
    pub(super) errors: u64,
    /// The first minute shown.
    pub(super) first: i64,
}

impl Hour {
    /// The hour ending with minute `now` of `system`, from the activity of all
    /// systems (minutes outside the hour are left out).
    pub(super) fn of(system: &str, minutes: &[CallMinute], now: i64) -> Self {
        let first = now - (MINUTES - 1);
        let mut by_minute: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for m in minutes
            .iter()
            .filter(|m| m.system == system && (first..=now).contains(&m.minute))
        {
            let entry = by_minute.entry(m.minute).or_default();
            entry.0 += m.finished;
            entry.1 += m.errors.min(m.finished);
        }
        let top = by_minute
            .values()
            .map(|(f, _)| *f)
            .max()
            .unwrap_or(0)
            .max(1);
        let scale = |n: u64| {
            if n == 0 {
                0.0
            } else {
                (PLOT_HEIGHT * n as f64 / top as f64).max(MIN_VISIBLE)
            }
        };
        let bars: Vec<Bar> = by_minute
            .iter()
            .filter(|(_, (finished, _))| *finished > 0)
            .map(|(minute, (finished, errors))| Bar {
                slot: minute - first,
                minute: *minute,
                finished: *finished,
                errors: *errors,
                height: scale(*finished),
                error_height: scale(*errors).min(scale(*finished)),
            })
            .collect();
        Self {
            finished: bars.iter().map(|b| b.finished).sum(),
            errors: bars.iter().map(|b| b.errors).sum(),
            bars,
            top,
            first,
        }
    }

    /// The share of errors in the hour's finished calls, in percent (0 without
    /// calls).
    pub(super) fn error_rate(&self) -> f64 {
        if self.finished == 0 {
            0.0
        } else {
            100.0 * self.errors as f64 / self.finished as f64
        }
    }

    /// The hour in words, for the chart's description and caption.
    pub(super) fn summary(&self) -> String {
        if self.finished == 0 {
            return "No calls finished in the last hour.".to_owned();
        }
        let busiest = self
            .bars
            .iter()
            .max_by_key(|b| (b.finished, -b.minute))
            .map_or(0, |b| b.minute);
        format!(
            "{} call(s) finished in the last hour, {} of them errors (error rate {:.1} %); \
             at most {} in one minute ({} UTC).",
            self.finished,
            self.errors,
            self.error_rate(),
            self.top,
            clock(busiest)
        )
    }
}

/// A Unix minute as `HH:MM` (UTC).
fn clock(minute: i64) -> String {
    OffsetDateTime::from_unix_timestamp(minute.saturating_mul(60)).map_or_else(
        |_| "?".to_owned(),
        |t| format!("{:02}:{:02}", t.hour(), t.minute()),
    )
}

/// A coordinate as the SVG gets it.
fn at(value: f64) -> String {
    format!("{value:.1}")
}

/// The chart of `system`'s hour; `index` makes its element ids unique on the page.
pub(super) fn chart(system: &str, index: usize, hour: &Hour) -> Markup {
    let title_id = format!("chart-{index}-title");
    let desc_id = format!("chart-{index}-desc");
    let baseline = TOP + PLOT_HEIGHT;
    let summary = hour.summary();
    html! {
        figure.chart data-system=(system) {
            svg.chart-svg xmlns="http://www.w3.org/2000/svg" role="img"
                viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width=(WIDTH) height=(HEIGHT)
                aria-labelledby=(format!("{title_id} {desc_id}")) {
                title id=(title_id) { (system) ": calls per minute over the last hour" }
                desc id=(desc_id) { (summary) }
                line.chart-axis x1=(at(LEFT - 2.0)) y1=(at(baseline)) x2=(at(LEFT + SLOT * MINUTES as f64)) y2=(at(baseline)) {}
                line.chart-grid x1=(at(LEFT - 2.0)) y1=(at(TOP)) x2=(at(LEFT + SLOT * MINUTES as f64)) y2=(at(TOP)) {}
                text.chart-label x=(at(LEFT - 6.0)) y=(at(TOP + 4.0)) text-anchor="end" { (hour.top) }
                text.chart-label x=(at(LEFT - 6.0)) y=(at(baseline + 4.0)) text-anchor="end" { "0" }
                text.chart-label x=(at(LEFT)) y=(at(HEIGHT - 6.0)) { (clock(hour.first)) }
                text.chart-label x=(at(LEFT + SLOT * MINUTES as f64)) y=(at(HEIGHT - 6.0)) text-anchor="end" { (clock(hour.first + MINUTES - 1)) " UTC" }
                @for bar in &hour.bars {
                    @let x = LEFT + SLOT * bar.slot as f64;
                    rect.chart-ok x=(at(x)) y=(at(baseline - bar.height)) width=(at(BAR)) height=(at(bar.height)) {}
                    @if bar.error_height > 0.0 {
                        rect.chart-error x=(at(x)) y=(at(baseline - bar.error_height)) width=(at(BAR)) height=(at(bar.error_height)) {}
                    }
                }
            }
            figcaption {
                (summary)
                " " span.chart-key-ok { "■ calls" } " " span.chart-key-error { "■ errors" }
            }
            @if !hour.bars.is_empty() {
                table.visually-hidden {
                    caption { (system) ": calls per minute over the last hour (minutes with calls)" }
                    thead { tr { th scope="col" { "Minute (UTC)" } th scope="col" { "Calls" } th scope="col" { "Errors" } } }
                    tbody {
                        @for bar in &hour.bars {
                            tr { th scope="row" { (clock(bar.minute)) } td { (bar.finished) } td { (bar.errors) } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(system: &str, minute: i64, finished: u64, errors: u64) -> CallMinute {
        CallMinute {
            system: system.into(),
            minute,
            finished,
            errors,
        }
    }

    /// 12:00 UTC of a day, as a Unix minute.
    const NOON: i64 = 20_000 * 1440 + 720;

    #[test]
    fn bars_scale_to_the_busiest_minute_and_sit_in_their_slot() {
        let now = NOON;
        let minutes = [
            minute("PRD", now, 10, 0),
            minute("PRD", now - 1, 5, 0),
            minute("PRD", now - 59, 1, 0),
            minute("QAS", now, 1000, 0),
        ];
        let hour = Hour::of("PRD", &minutes, now);
        assert_eq!(hour.top, 10, "another system's minutes do not count");
        assert_eq!(hour.finished, 16);
        let slots: Vec<(i64, f64)> = hour.bars.iter().map(|b| (b.slot, b.height)).collect();
        assert_eq!(
            slots,
            [
                (0, PLOT_HEIGHT / 10.0),
                (58, PLOT_HEIGHT / 2.0),
                (59, PLOT_HEIGHT)
            ]
        );
        let svg = chart("PRD", 0, &hour).into_string();
        // The current minute's bar is the last slot, full height.
        let x = at(LEFT + SLOT * 59.0);
        assert!(
            svg.contains(&format!(
                r#"class="chart-ok" x="{x}" y="{}" width="5.0" height="{}""#,
                at(TOP),
                at(PLOT_HEIGHT)
            )),
            "{svg}"
        );
        assert!(!svg.contains("chart-error"), "no errors, no error bars");
        assert!(!svg.contains("style="), "the CSP forbids style attributes");
    }

    #[test]
    fn an_empty_hour_draws_no_bars_and_says_so() {
        let now = NOON;
        // Calls before the hour do not count.
        let hour = Hour::of("PRD", &[minute("PRD", now - 60, 7, 7)], now);
        assert_eq!((hour.finished, hour.errors, hour.top), (0, 0, 1));
        assert!(hour.bars.is_empty());
        assert_eq!(hour.error_rate(), 0.0);
        let svg = chart("PRD", 3, &hour).into_string();
        assert!(!svg.contains("<rect"));
        assert!(svg.contains("No calls finished in the last hour."));
        assert!(!svg.contains("<table"), "no table of nothing");
        assert!(svg.contains(r#"aria-labelledby="chart-3-title chart-3-desc""#));
    }

    #[test]
    fn a_system_with_no_calls_gets_an_empty_chart_beside_a_busy_one() {
        let now = NOON;
        let hour = Hour::of("DEV", &[minute("PRD", now, 4, 1)], now);
        assert!(hour.bars.is_empty());
        assert_eq!(hour.summary(), "No calls finished in the last hour.");
    }

    #[test]
    fn all_errors_fill_the_bars_in_the_error_colour() {
        let now = NOON;
        let minutes = [minute("PRD", now - 2, 4, 4), minute("PRD", now, 2, 2)];
        let hour = Hour::of("PRD", &minutes, now);
        assert_eq!((hour.finished, hour.errors), (6, 6));
        assert!((hour.error_rate() - 100.0).abs() < f64::EPSILON);
        for bar in &hour.bars {
            assert_eq!(bar.error_height, bar.height);
        }
        let summary = hour.summary();
        assert!(summary.contains("error rate 100.0 %"), "{summary}");
        assert!(
            summary.contains("at most 4 in one minute (11:58 UTC)"),
            "{summary}"
        );
        let svg = chart("PRD", 0, &hour).into_string();
        assert_eq!(
            svg.matches("class=\"chart-error\"").count(),
            2,
            "two error bars"
        );
        assert!(
            svg.contains("<td>4</td><td>4</td>"),
            "the hidden table: {svg}"
        );
    }

    #[test]
    fn one_error_among_many_calls_still_shows() {
        let now = NOON;
        let hour = Hour::of("PRD", &[minute("PRD", now, 1000, 1)], now);
        let bar = &hour.bars[0];
        assert_eq!(bar.height, PLOT_HEIGHT);
        assert_eq!(bar.error_height, MIN_VISIBLE);
        assert!(hour.summary().contains("error rate 0.1 %"));
    }
}
