//! The working-day calendar: official schedules as data, Beijing time, and the rule
//! "within N working days of instant t ends at 24:00 Beijing time of the Nth working day
//! after the date of t" (the date of t itself is not counted).
//!
//! A working day is Monday to Friday, minus public holidays, plus make-up working days (调休).
//! For a year with no published schedule the weekday rule is used and the answer is marked
//! provisional: never silently wrong.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// Beijing time: UTC+8 all year, no daylight saving.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Most working days one deadline may span; bounds the day-by-day walk.
pub const WORKING_DAYS_MAX: u32 = 3_660;

/// The schedules shipped with this build: one file per year, each naming its notice.
const OFFICIAL_SCHEDULES: [&str; 2] = [include_str!("calendars/2025.toml"), include_str!("calendars/2026.toml")];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("calendar file is not valid TOML: {0}")]
    Syntax(String),
    #[error("calendar for {year}: {message}")]
    Invalid { year: i32, message: String },
    #[error("a deadline is 1 to {WORKING_DAYS_MAX} working days, not {0}")]
    WorkingDays(u32),
    #[error("the deadline falls outside the dates this calendar can represent")]
    OutOfRange,
}

/// One holiday block from a notice, inclusive at both ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HolidayRange {
    pub name: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// The official schedule of one year, as published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YearSchedule {
    pub year: i32,
    /// The State Council notice the schedule comes from.
    pub notice: String,
    pub holidays: Vec<HolidayRange>,
    /// Make-up working days (调休) that fall on weekends.
    pub workdays: Vec<NaiveDate>,
}

impl YearSchedule {
    /// Parses and checks a schedule file.
    pub fn from_toml(text: &str) -> Result<Self, CalendarError> {
        let schedule: YearSchedule = toml::from_str(text).map_err(|e| CalendarError::Syntax(e.to_string()))?;
        schedule.validate()?;
        Ok(schedule)
    }

    pub fn validate(&self) -> Result<(), CalendarError> {
        let invalid = |message: String| CalendarError::Invalid { year: self.year, message };
        if self.notice.trim().is_empty() {
            return Err(invalid("the notice it comes from must be named".into()));
        }
        let holidays = self.holiday_dates();
        for range in &self.holidays {
            if range.from > range.to {
                return Err(invalid(format!("holiday {} ends before it starts", range.name)));
            }
            if range.from.year() != self.year || range.to.year() != self.year {
                return Err(invalid(format!("holiday {} is not within {}", range.name, self.year)));
            }
        }
        for day in &self.workdays {
            if day.year() != self.year {
                return Err(invalid(format!("make-up working day {day} is not within {}", self.year)));
            }
            if !is_weekend(*day) {
                return Err(invalid(format!("make-up working day {day} is not a weekend day")));
            }
            if holidays.contains(day) {
                return Err(invalid(format!("{day} is both a holiday and a make-up working day")));
            }
        }
        Ok(())
    }

    fn holiday_dates(&self) -> BTreeSet<NaiveDate> {
        self.holidays.iter().flat_map(|r| r.from.iter_days().take_while(move |d| *d <= r.to)).collect()
    }
}

/// The answer for one date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayKind {
    pub working: bool,
    /// True when no schedule is loaded for the date's year and the weekday rule was used.
    pub provisional: bool,
}

/// A computed deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub due_at: DateTime<Utc>,
    /// True when any day counted lies in a year with no published schedule.
    pub provisional: bool,
}

impl Deadline {
    /// RFC 3339 in Beijing time, e.g. `2026-09-23T00:00:00+08:00`.
    pub fn to_beijing_rfc3339(&self) -> String {
        self.due_at.with_timezone(&beijing()).to_rfc3339()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct YearDays {
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

/// Working-day calendar over the years whose schedules are loaded.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Calendar {
    years: BTreeMap<i32, YearDays>,
}

impl Calendar {
    /// The calendar with every official schedule shipped in this build.
    pub fn official() -> Self {
        static OFFICIAL: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();
        OFFICIAL
            .get_or_init(|| {
                let mut calendar = Calendar::default();
                for text in OFFICIAL_SCHEDULES {
                    let schedule = YearSchedule::from_toml(text).expect("shipped calendar files are valid (tested)");
                    calendar.load(&schedule);
                }
                calendar
            })
            .clone()
    }

    /// Adds or replaces one year's schedule.
    pub fn load(&mut self, schedule: &YearSchedule) {
        let days =
            YearDays { holidays: schedule.holiday_dates(), workdays: schedule.workdays.iter().copied().collect() };
        self.years.insert(schedule.year, days);
    }

    pub fn has_year(&self, year: i32) -> bool {
        self.years.contains_key(&year)
    }

    pub fn day(&self, date: NaiveDate) -> DayKind {
        match self.years.get(&date.year()) {
            Some(days) => {
                let working = days.workdays.contains(&date) || (!is_weekend(date) && !days.holidays.contains(&date));
                DayKind { working, provisional: false }
            }
            None => DayKind { working: !is_weekend(date), provisional: true },
        }
    }

    /// The end (24:00 Beijing time) of the Nth working day after the Beijing date of `from`.
    pub fn working_days_after(&self, from: DateTime<Utc>, working_days: u32) -> Result<Deadline, CalendarError> {
        if working_days == 0 || working_days > WORKING_DAYS_MAX {
            return Err(CalendarError::WorkingDays(working_days));
        }
        let mut date = from.with_timezone(&beijing()).date_naive();
        let mut remaining = working_days;
        let mut provisional = false;
        while remaining > 0 {
            date = date.checked_add_days(Days::new(1)).ok_or(CalendarError::OutOfRange)?;
            let day = self.day(date);
            provisional |= day.provisional;
            if day.working {
                remaining -= 1;
            }
        }
        let end = date.checked_add_days(Days::new(1)).ok_or(CalendarError::OutOfRange)?;
        Ok(Deadline { due_at: start_of_beijing_day(end)?, provisional })
    }
}

fn start_of_beijing_day(date: NaiveDate) -> Result<DateTime<Utc>, CalendarError> {
    let midnight = date.and_hms_opt(0, 0, 0).ok_or(CalendarError::OutOfRange)?;
    beijing().from_local_datetime(&midnight).single().map(|t| t.with_timezone(&Utc)).ok_or(CalendarError::OutOfRange)
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}
