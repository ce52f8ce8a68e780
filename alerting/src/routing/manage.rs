//! Silence and calendar management on the `Dispatcher` (what the API edits): create, edit and
//! expire silences; view and override calendar days; list time windows.

use super::RoutingError;
use super::dispatcher::{Dispatcher, Inner};
use super::silence::{CompiledSilence, Silence, SilenceSpec, SilenceStatus};
use crate::calendar::{Calendar, DayInfo, DayKind, TimeWindowConfig, parse_date};
use sha2::{Digest, Sha256};

impl Dispatcher {
    fn new_id(inner: &mut Inner, spec: &SilenceSpec, now_ms: i64) -> String {
        inner.id_seq += 1;
        let mut h = Sha256::new();
        h.update(now_ms.to_be_bytes());
        h.update(inner.id_seq.to_be_bytes());
        h.update(spec.matchers.join("\u{ff}").as_bytes());
        h.update(spec.created_by.as_bytes());
        hex::encode(&h.finalize()[..12])
    }

    /// Creates a silence; it takes effect at the next `process`/`tick`.
    pub fn create_silence(&self, spec: &SilenceSpec, now_ms: i64) -> Result<Silence, RoutingError> {
        let mut inner = self.inner.lock();
        loop {
            // Each try hashes a higher sequence number, so a taken id is never tried twice.
            let id = Self::new_id(&mut inner, spec, now_ms);
            if inner.silences.contains_key(&id) {
                continue;
            }
            let s = spec.build(id.clone(), now_ms, now_ms)?;
            // Insert-if-absent in one statement: an id another process on the same database
            // took meanwhile is skipped, never overwritten.
            if !self.store.insert_silence(&s.silence)? {
                continue;
            }
            let out = s.silence.clone();
            inner.silences.insert(id, s);
            return Ok(out);
        }
    }

    /// Replaces a silence that has not expired.
    pub fn update_silence(&self, id: &str, spec: &SilenceSpec, now_ms: i64) -> Result<Silence, RoutingError> {
        let mut inner = self.inner.lock();
        let cal = inner.compiled.calendar.clone();
        let existing =
            inner.silences.get(id).ok_or_else(|| RoutingError::NotFound { what: "silence", id: id.into() })?;
        if existing.status(&cal, now_ms) == SilenceStatus::Expired {
            return Err(RoutingError::invalid("id", "an expired silence cannot be edited; create a new one"));
        }
        let s = spec.build(id.to_string(), existing.silence.created_at_ms, now_ms)?;
        self.store.put_silence(&s.silence)?;
        let out = s.silence.clone();
        inner.silences.insert(id.to_string(), s);
        Ok(out)
    }

    /// Ends a silence now (a pending one never starts). Kept for the record.
    pub fn expire_silence(&self, id: &str, now_ms: i64) -> Result<Silence, RoutingError> {
        let mut inner = self.inner.lock();
        let cal = inner.compiled.calendar.clone();
        let existing =
            inner.silences.get(id).ok_or_else(|| RoutingError::NotFound { what: "silence", id: id.into() })?;
        if existing.status(&cal, now_ms) == SilenceStatus::Expired {
            return Ok(existing.silence.clone());
        }
        let mut s = existing.silence.clone();
        s.ends_at_ms = Some(now_ms.max(s.starts_at_ms));
        s.updated_at_ms = now_ms;
        let compiled = CompiledSilence::compile(s)?;
        self.store.put_silence(&compiled.silence)?;
        let out = compiled.silence.clone();
        inner.silences.insert(id.to_string(), compiled);
        Ok(out)
    }

    pub fn silences(&self, now_ms: i64) -> Vec<(Silence, SilenceStatus)> {
        let inner = self.inner.lock();
        inner.silences.values().map(|s| (s.silence.clone(), s.status(&inner.compiled.calendar, now_ms))).collect()
    }

    pub fn silence(&self, id: &str, now_ms: i64) -> Result<(Silence, SilenceStatus), RoutingError> {
        let inner = self.inner.lock();
        let s = inner.silences.get(id).ok_or_else(|| RoutingError::NotFound { what: "silence", id: id.into() })?;
        Ok((s.silence.clone(), s.status(&inner.compiled.calendar, now_ms)))
    }

    // ---- calendar ----

    /// The days of `year` that are not plain Monday–Friday/weekend days, with their source.
    pub fn calendar_year(&self, year: i32) -> Vec<DayInfo> {
        self.inner.lock().compiled.calendar.special_days(year)
    }

    pub fn calendar_day(&self, date: &str) -> Result<DayInfo, RoutingError> {
        let d = parse_date("date", date).map_err(|e| RoutingError::invalid("date", e.to_string()))?;
        Ok(self.inner.lock().compiled.calendar.day(d))
    }

    /// Sets (persisted) whether a date is a holiday or a workday; wins over statutory data
    /// and configuration.
    pub fn set_calendar_day(
        &self,
        date: &str,
        kind: DayKind,
        name: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<DayInfo, RoutingError> {
        let d = parse_date("date", date).map_err(|e| RoutingError::invalid("date", e.to_string()))?;
        if by.trim().is_empty() {
            return Err(RoutingError::invalid("by", "say who edits the calendar"));
        }
        let mut inner = self.inner.lock();
        self.store.put_calendar_override(d, kind, name, by.trim(), now_ms)?;
        inner.compiled.calendar.set_api_overrides(self.store.load_calendar_overrides()?);
        Ok(inner.compiled.calendar.day(d))
    }

    /// Removes an API override; the day falls back to configuration, statutory data, weekday.
    pub fn clear_calendar_day(&self, date: &str) -> Result<DayInfo, RoutingError> {
        let d = parse_date("date", date).map_err(|e| RoutingError::invalid("date", e.to_string()))?;
        let mut inner = self.inner.lock();
        if !self.store.delete_calendar_override(d)? {
            return Err(RoutingError::NotFound { what: "calendar override", id: date.to_string() });
        }
        inner.compiled.calendar.set_api_overrides(self.store.load_calendar_overrides()?);
        Ok(inner.compiled.calendar.day(d))
    }

    /// A copy of the current calendar (statutory + config + API overrides).
    pub fn calendar(&self) -> Calendar {
        self.inner.lock().compiled.calendar.clone()
    }

    /// Named windows with whether each is open at `now_ms` and when that next changes.
    pub fn time_windows(&self, now_ms: i64) -> Vec<(TimeWindowConfig, bool, Option<i64>)> {
        let inner = self.inner.lock();
        let cal = &inner.compiled.calendar;
        inner
            .compiled
            .windows
            .values()
            .map(|w| (w.config().clone(), w.contains(cal, now_ms), w.next_change(cal, now_ms)))
            .collect()
    }
}
