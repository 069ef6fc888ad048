//! The periodic 三率 通报: periods (months, ISO weeks), the ranking rule, when a period's
//! 通报 is published (org.toml `[reports]`: by default the first working day after the month,
//! 09:00 Beijing, by the official calendar), and the publisher that records it as an event.
//!
//! Every instance runs a publisher; the command id of a period's 通报 is the same on all of
//! them, so it is stored once, and delivery sends it once (the same claims as alerts).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::domain::calendar::beijing;
use crate::domain::command::{Command, CommandBody};
use crate::domain::decide::report_ids;
use crate::domain::event::Actor;
use crate::domain::Calendar;
use crate::execute::{ExecuteError, Executor};
use crate::log::EventLog;
use crate::projector::stats::{rate, StatsCell, StatsDimension};
use crate::projector::views::{ViewError, Views};

/// A 通报 missed while no instance ran is still published within this long after its time;
/// later, it is left to be read on demand (a fresh installation does not announce old months).
pub const PUBLISH_GRACE: Duration = Duration::days(3);
/// How long a publication waits for the views to catch up before it tries again later.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Pause before trying a failed publication again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// org.toml `[reports]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReportSchedule {
    /// Publish the monthly 通报 (default true).
    #[serde(default = "yes")]
    pub monthly: bool,
    /// Publish the weekly 通报 (default false).
    #[serde(default)]
    pub weekly: bool,
    /// Time of day (Beijing) on the first working day after the period (default 09:00).
    #[serde(default = "nine")]
    pub at: NaiveTime,
    /// Address of the dashboard, for the link in the message (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

fn yes() -> bool {
    true
}

fn nine() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 0, 0).expect("09:00 is a time")
}

impl Default for ReportSchedule {
    fn default() -> Self {
        ReportSchedule { monthly: true, weekly: false, at: nine(), link: None }
    }
}

impl ReportSchedule {
    pub fn kinds(&self) -> Vec<PeriodKind> {
        let mut out = Vec::new();
        if self.monthly {
            out.push(PeriodKind::Monthly);
        }
        if self.weekly {
            out.push(PeriodKind::Weekly);
        }
        out
    }
}

/// A reporting period: a month (`2026-11`) or an ISO week (`2026-W48`), Beijing dates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    pub label: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodKind {
    Monthly,
    Weekly,
}

impl PeriodKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "monthly" => Some(PeriodKind::Monthly),
            "weekly" => Some(PeriodKind::Weekly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Monthly => "monthly",
            PeriodKind::Weekly => "weekly",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            PeriodKind::Monthly => "月度",
            PeriodKind::Weekly => "周",
        }
    }
}

impl Period {
    /// The period of this kind that contains `day`.
    pub fn containing(kind: PeriodKind, day: NaiveDate) -> Period {
        match kind {
            PeriodKind::Monthly => {
                let from = day.with_day(1).expect("day 1 exists");
                let next = if from.month() == 12 {
                    NaiveDate::from_ymd_opt(from.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(from.year(), from.month() + 1, 1)
                }
                .expect("the first of a month exists");
                Period { kind, label: from.format("%Y-%m").to_string(), from, to: next - Duration::days(1) }
            }
            PeriodKind::Weekly => {
                let from = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                let week = from.iso_week();
                Period {
                    kind,
                    label: format!("{}-W{:02}", week.year(), week.week()),
                    from,
                    to: from + Duration::days(6),
                }
            }
        }
    }

    pub fn parse(kind: PeriodKind, text: &str) -> Result<Period, String> {
        let day = match kind {
            PeriodKind::Monthly => NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
                .ok()
                .filter(|_| text.len() == 7)
                .ok_or_else(|| format!("period is a month like 2026-11, not {text:?}"))?,
            PeriodKind::Weekly => {
                let bad = || format!("period is an ISO week like 2026-W48, not {text:?}");
                let (year, week) = text.split_once("-W").ok_or_else(bad)?;
                let year: i32 = year.parse().map_err(|_| bad())?;
                let week: u32 = week.parse().map_err(|_| bad())?;
                NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon).ok_or_else(bad)?
            }
        };
        Ok(Period::containing(kind, day))
    }

    /// The period just before this one.
    pub fn previous(&self) -> Period {
        Period::containing(self.kind, self.from - Duration::days(1))
    }

    pub fn title(&self) -> String {
        match self.kind {
            PeriodKind::Monthly => format!("{}年{}月三率通报", self.from.year(), self.from.month()),
            PeriodKind::Weekly => format!("{} 周三率通报（{} 至 {}）", self.label, self.from, self.to),
        }
    }
}

/// One ranked row of a 通报.
pub struct RankedRow {
    pub rank: usize,
    pub unit: String,
    pub cell: StatsCell,
    /// Change of 响应率, 解决率, 满意率 against the previous period (fractions; `None` when
    /// either period has nothing counted).
    pub change: [Option<f64>; 3],
}

/// Ranks rows: by 响应率, then 解决率, then 满意率 (higher first; nothing counted last), then
/// fewer breaches, then name. Equal keys share a rank.
pub fn rank(rows: Vec<(String, StatsCell)>, previous: &BTreeMap<String, StatsCell>) -> Vec<RankedRow> {
    type Key = ([Fraction; 3], i64);
    let key = |cell: &StatsCell| -> Key {
        (
            [
                Fraction(cell.on_time, cell.response_base),
                Fraction(cell.resolved, cell.resolution_base),
                Fraction(cell.satisfied + cell.basically_satisfied, cell.rated),
            ],
            cell.breaches,
        )
    };
    let mut rows = rows;
    rows.sort_by(|(ua, a), (ub, b)| {
        let (ka, kb) = (key(a), key(b));
        kb.0.cmp(&ka.0).then(ka.1.cmp(&kb.1)).then(ua.cmp(ub))
    });
    let mut out: Vec<RankedRow> = Vec::with_capacity(rows.len());
    for (i, (unit, cell)) in rows.into_iter().enumerate() {
        let rank = match out.last() {
            Some(last) if key(&last.cell) == key(&cell) => last.rank,
            _ => i + 1,
        };
        let now = cell.rates();
        let before = previous.get(&unit).map(StatsCell::rates).unwrap_or([None; 3]);
        let change = [0, 1, 2].map(|i| match (now[i], before[i]) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        });
        out.push(RankedRow { rank, unit, cell, change });
    }
    out
}

/// A rate as the fraction it is (numerator, denominator), compared exactly: 1/3 equals 2/6 and
/// is below 333,334/1,000,000. Nothing counted (a zero denominator) is below every rate.
#[derive(Clone, Copy, Debug)]
struct Fraction(i64, i64);

impl Ord for Fraction {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self.1 > 0, other.1 > 0) {
            (true, true) => (i128::from(self.0) * i128::from(other.1)).cmp(&(i128::from(other.0) * i128::from(self.1))),
            (counted, other_counted) => counted.cmp(&other_counted),
        }
    }
}

impl PartialOrd for Fraction {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Fraction {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Fraction {}

/// The last whole period of a kind before `now` (Beijing).
pub fn last_whole_period(kind: PeriodKind, now: DateTime<Utc>) -> Period {
    let today = now.with_timezone(&beijing()).date_naive();
    Period::containing(kind, today).previous()
}

/// When a period's 通报 is published: `at` on the first working day after the period.
pub fn publication_time(period: &Period, calendar: &Calendar, at: NaiveTime) -> DateTime<Utc> {
    let mut day = period.to + Duration::days(1);
    // Bounded: no published schedule has more than a few weeks without a working day.
    for _ in 0..60 {
        if calendar.day(day).working {
            break;
        }
        day += Duration::days(1);
    }
    day.and_time(at).and_local_timezone(beijing()).single().map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

/// A rate as the 通报 text shows it: percentage, then numerator/denominator.
pub fn percent_text(numerator: i64, denominator: i64) -> String {
    match rate(numerator, denominator) {
        Some(r) => format!("{:.1}%（{numerator}/{denominator}）", r * 100.0),
        None => "—（无计入）".to_owned(),
    }
}

/// The departments' cells of a period, by unit, from the views.
pub fn department_cells(views: &Views, period: &Period) -> Result<Vec<(String, StatsCell)>, ViewError> {
    Ok(views.stats(StatsDimension::Department, &period.from.to_string(), &period.to.to_string())?.into_iter().collect())
}

/// The line a 通报 is announced with: the period, and the best and the worst department by
/// the ranking (those with something counted).
pub fn summary(views: &Views, period: &Period) -> Result<String, ViewError> {
    let ranked = rank(department_cells(views, period)?, &BTreeMap::new());
    let counted: Vec<&RankedRow> = ranked.iter().filter(|r| r.cell.response_base > 0).collect();
    let line = |r: &RankedRow| {
        format!(
            "{}：响应率 {}，解决率 {}，满意率 {}，超时 {} 次",
            r.unit,
            percent_text(r.cell.on_time, r.cell.response_base),
            percent_text(r.cell.resolved, r.cell.resolution_base),
            percent_text(r.cell.satisfied + r.cell.basically_satisfied, r.cell.rated),
            r.cell.breaches
        )
    };
    Ok(match (counted.first(), counted.last()) {
        (Some(best), Some(worst)) if counted.len() > 1 => format!("排名第一 {}；排名末位 {}", line(best), line(worst)),
        (Some(only), _) => format!("唯一计入单位 {}", line(only)),
        _ => "本期没有计入的召集".to_owned(),
    })
}

/// Whether any whistle or feedback was opened in the period.
pub fn opened_any(views: &Views, period: &Period) -> Result<bool, ViewError> {
    let (from, to) = (period.from.to_string(), period.to.to_string());
    for dimension in [StatsDimension::Township, StatsDimension::Office] {
        if views.stats(dimension, &from, &to)?.values().any(|c| c.cases > 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Publishes each enabled kind's 通报 at its time, until `stop`.
pub struct Publisher {
    pub executor: Arc<Executor>,
    pub log: Arc<dyn EventLog>,
    /// The projector's checkpoint: a 通报 is computed from views that have caught up.
    pub checkpoint: watch::Receiver<u64>,
    pub views: Views,
    pub clock: Arc<dyn Clock>,
    pub calendar: watch::Receiver<Arc<Calendar>>,
    pub schedule: ReportSchedule,
}

impl Publisher {
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let kinds = self.schedule.kinds();
        if kinds.is_empty() {
            return;
        }
        while !*stop.borrow() {
            let now = self.clock.now();
            let mut next: Option<DateTime<Utc>> = None;
            let mut retry = false;
            for kind in &kinds {
                let calendar = self.calendar.borrow().clone();
                let today = now.with_timezone(&beijing()).date_naive();
                let current = Period::containing(*kind, today);
                // The last whole period's 通报 (due now or earlier), and the current one's.
                for period in [current.previous(), current] {
                    let time = publication_time(&period, &calendar, self.schedule.at);
                    if time > now {
                        next = Some(next.map_or(time, |n| n.min(time)));
                    } else if now < time + PUBLISH_GRACE {
                        if let Err(e) = self.publish(&period, now).await {
                            tracing::warn!(period = %period.label, "通报 not published yet: {e}");
                            retry = true;
                        }
                    }
                }
            }
            let wake = if retry { Some(now + Duration::from_std(RETRY_AFTER).unwrap_or_default()) } else { next };
            let sleep = crate::clock::sleep_until_if(self.clock.as_ref(), wake);
            tokio::select! {
                _ = sleep => {}
                // A year published since may move the first working day.
                _ = self.calendar.changed() => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Records a period's 通报 (once: a second attempt, here or on another instance, is
    /// refused as already published). A period in which no case was opened has nothing to
    /// announce: no 通报 is published for it (it can still be read on demand).
    pub async fn publish(&self, period: &Period, now: DateTime<Utc>) -> Result<bool, String> {
        // Everything stored until now is in the views first (after a restart they may be
        // catching up): the 通报 and its summary must not miss records.
        let head = self.log.head().await.map_err(|e| e.to_string())?;
        let mut checkpoint = self.checkpoint.clone();
        tokio::time::timeout(CATCH_UP_WAIT, checkpoint.wait_for(|c| *c >= head))
            .await
            .map_err(|_| format!("the views have not reached record {head} yet"))?
            .map_err(|_| "the projector has stopped".to_owned())?;
        if !opened_any(&self.views, period).map_err(|e| e.to_string())? {
            return Ok(false);
        }
        let (case_id, command_id) = report_ids(period.kind.as_str(), &period.label);
        let summary = summary(&self.views, period).map_err(|e| e.to_string())?;
        let body = CommandBody::PublishReport {
            kind: period.kind.as_str().to_owned(),
            period: period.label.clone(),
            from: period.from,
            to: period.to,
            summary,
        };
        let cmd = Command::new(command_id, case_id, Actor::system(), body);
        match self.executor.execute(&cmd, now).await {
            Ok(done) => {
                if !done.repeated && !done.events.is_empty() {
                    tracing::info!(period = %period.label, "通报 published");
                }
                Ok(!done.repeated && !done.events.is_empty())
            }
            Err(ExecuteError::Rejected(_)) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(on_time: i64, base: i64) -> StatsCell {
        StatsCell { on_time, response_base: base, ..StatsCell::default() }
    }

    #[test]
    fn rates_rank_exactly_as_fractions() {
        let rows = vec![
            ("甲".to_owned(), cell(1, 3)),
            ("乙".to_owned(), cell(333_333_333, 1_000_000_000)),
            ("丙".to_owned(), cell(2, 6)),
            ("丁".to_owned(), cell(0, 0)),
        ];
        let ranked: Vec<(String, usize)> = rank(rows, &BTreeMap::new()).into_iter().map(|r| (r.unit, r.rank)).collect();
        let expected = [("丙", 1), ("甲", 1), ("乙", 3), ("丁", 4)];
        assert_eq!(ranked, expected.map(|(u, r)| (u.to_owned(), r)), "1/3 equals 2/6 and is above 0.333333333");
    }
}
