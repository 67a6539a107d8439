//! Schedules, evaluated in UTC: a cron expression of five fields (minute, hour, day
//! of month, month, day of week, as crontab(5) has them), `@hourly`-style shorthands,
//! or an interval, `every 30m` (units s, m, h, d).

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, TimeDelta, Utc};
use std::str::FromStr;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub(crate) enum Schedule {
    /// A cron expression (stored with a leading seconds field of 0).
    Cron(Box<cron::Schedule>),
    /// Every so often, counted from the Unix epoch (so every 6 h is 00:00, 06:00, ... UTC).
    Every(TimeDelta),
}

impl FromStr for Schedule {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Schedule> {
        let text = text.trim();
        if let Some(interval) = text.strip_prefix("every ") {
            return parse_interval(interval.trim()).map(Schedule::Every);
        }
        let expression = if text.starts_with('@') {
            text.to_owned()
        } else {
            let fields = text.split_whitespace().count();
            if fields != 5 {
                bail!("`{text}` is not a schedule: write five cron fields (minute hour day-of-month month day-of-week, in UTC, e.g. `0 3 * * *`), `@daily`, or an interval such as `every 6h`");
            }
            format!("0 {text}")
        };
        let schedule = cron::Schedule::from_str(&expression)
            .map_err(|e| anyhow!("`{text}` is not a valid cron expression: {e}"))?;
        Ok(Schedule::Cron(Box::new(schedule)))
    }
}

fn parse_interval(text: &str) -> Result<TimeDelta> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| anyhow!("`every {text}`: expected a number then s, m, h or d"))?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("`every {text}`: the unit must be s, m, h or d"),
    };
    if number < 1 || number > 366 * 86_400 / seconds {
        bail!("`every {text}`: choose an interval between 1 s and a year");
    }
    Ok(TimeDelta::seconds(number * seconds))
}

impl Schedule {
    /// The first time strictly after `now` the schedule comes due.
    pub(crate) fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(schedule) => schedule.after(&now).next(),
            Schedule::Every(interval) => {
                let step = interval.num_milliseconds();
                let now_ms = now.timestamp_millis();
                DateTime::from_timestamp_millis((now_ms / step + 1) * step)
            }
        }
    }

    /// The next `n` due times after `now`.
    pub(crate) fn upcoming(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(n);
        let mut at = now;
        while times.len() < n {
            let Some(next) = self.next_after(at) else { break };
            times.push(next);
            at = next;
        }
        times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cron_and_intervals_come_due_in_utc() {
        let daily: Schedule = "0 3 * * *".parse().unwrap();
        assert_eq!(daily.next_after(at("2026-11-30T02:59:59Z")), Some(at("2026-11-30T03:00:00Z")));
        assert_eq!(daily.next_after(at("2026-11-30T03:00:00Z")), Some(at("2026-12-01T03:00:00Z")));
        let every: Schedule = "every 6h".parse().unwrap();
        assert_eq!(
            every.upcoming(at("2026-11-30T05:10:00Z"), 3),
            vec![at("2026-11-30T06:00:00Z"), at("2026-11-30T12:00:00Z"), at("2026-11-30T18:00:00Z")]
        );
        let hourly: Schedule = "@hourly".parse().unwrap();
        assert_eq!(hourly.next_after(at("2026-11-30T05:10:00Z")), Some(at("2026-11-30T06:00:00Z")));
    }

    #[test]
    fn bad_schedules_say_what_is_expected() {
        let err = |text: &str| format!("{:#}", text.parse::<Schedule>().unwrap_err());
        assert!(err("daily").contains("five cron fields"), "{}", err("daily"));
        assert!(err("61 * * * *").contains("not a valid cron expression"));
        assert!(err("every 5x").contains("unit must be"));
        assert!(err("every 0m").contains("between 1 s and a year"));
    }
}
