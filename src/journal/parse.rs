//! One session journal line into an [`Event`]. serde's derive for the internally tagged
//! `Event` first buffers the whole line into an intermediate tree (to find `event`
//! wherever it is), then builds the variant from the tree: most of the time of a
//! 40 000-line journal's first fold (the first frame of a 10 000-task dashboard, a
//! `status`, a `resume`). The four events every attempt writes (`task_assigned`,
//! `task_started`, `attempt_ended`, `task_finished`: nearly every line of a large
//! journal) are read here directly when the line is exactly as [`super::Journal`] writes
//! it: `{"ts":"...","event":"NAME",` then the variant's fields in their declared order,
//! strings without escapes, integers in range, nothing else. Any other line, and any line
//! this reader is unsure of, goes through the derive: a direct read accepts only lines
//! the derive accepts, and gives the same event (the tests check both on the same lines),
//! so what is accepted, refused and counted malformed does not change.

use serde::Deserialize;
use serde::de::IntoDeserializer;

use super::event::{EndReason, Event};
use crate::proto::TaskState;

/// The event of `line`, or `None` when it is not one (a malformed line).
pub fn event(line: &[u8]) -> Option<Event> {
    direct(line).or_else(|| serde_json::from_slice(line).ok())
}

fn direct(line: &[u8]) -> Option<Event> {
    let mut c = Cursor { b: line, i: 0 };
    c.lit(b"{\"ts\":")?;
    c.text()?;
    c.lit(b",\"event\":")?;
    let ev = match c.text()? {
        "task_assigned" => {
            let task = c.string("task")?;
            let attempt = c.int("attempt")?;
            let worker = c.string("worker")?;
            let seq = c.int("seq")?;
            Event::TaskAssigned {
                task,
                attempt,
                worker,
                seq,
            }
        }
        "task_started" => {
            let task = c.string("task")?;
            let attempt = c.int("attempt")?;
            let worker = c.string("worker")?;
            let pid = c.opt_int("pid")?;
            let proc_start = c.opt_int("proc_start")?;
            let boot_id = c.opt_string("boot_id")?;
            Event::TaskStarted {
                task,
                attempt,
                worker,
                pid,
                proc_start,
                boot_id,
            }
        }
        "attempt_ended" => {
            let task = c.string("task")?;
            let attempt = c.int("attempt")?;
            let worker = c.opt_string("worker")?;
            let reason = c.unit::<EndReason>("reason")?;
            Event::AttemptEnded {
                task,
                attempt,
                worker,
                reason,
            }
        }
        "task_finished" => {
            let task = c.string("task")?;
            let attempt = c.int("attempt")?;
            let worker = c.opt_string("worker")?;
            let state = c.unit::<TaskState>("state")?;
            let exit_code = c.opt_int("exit_code")?;
            let reason = c.opt_string("reason")?;
            Event::TaskFinished {
                task,
                attempt,
                worker,
                state,
                exit_code,
                reason,
            }
        }
        _ => return None,
    };
    (c.b[c.i..] == *b"}").then_some(ev)
}

/// A place in a line; each read takes what it expects from there, or gives `None`.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(s).then(|| self.i += s.len())
    }

    /// `,"KEY":`.
    fn key(&mut self, key: &str) -> Option<()> {
        self.lit(b",\"")?;
        self.lit(key.as_bytes())?;
        self.lit(b"\":")
    }

    /// A string without escapes or control characters (the derive refuses the latter,
    /// and decodes the former: both are left to it).
    fn text(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let rest = &self.b[self.i..];
        let end = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[end] != b'"' {
            return None;
        }
        self.i += end + 1;
        std::str::from_utf8(&rest[..end]).ok()
    }

    fn string(&mut self, key: &str) -> Option<String> {
        self.key(key)?;
        self.text().map(str::to_string)
    }

    fn opt_string(&mut self, key: &str) -> Option<Option<String>> {
        self.key(key)?;
        if self.lit(b"null").is_some() {
            return Some(None);
        }
        self.text().map(|t| Some(t.to_string()))
    }

    /// A unit variant of `T`, named as serde names it.
    fn unit<T: for<'de> Deserialize<'de>>(&mut self, key: &str) -> Option<T> {
        self.key(key)?;
        let name = self.text()?;
        T::deserialize(name.into_deserializer())
            .map_err(|_: serde::de::value::Error| ())
            .ok()
    }

    /// An integer written plainly (no sign but a minus, no leading zero, no fraction or
    /// exponent, at most 18 digits) that fits `T`.
    fn number<T: TryFrom<i64>>(&mut self) -> Option<T> {
        let neg = self.lit(b"-").is_some();
        let rest = &self.b[self.i..];
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let digits = &rest[..n];
        if n == 0 || n > 18 || (n > 1 && digits[0] == b'0') || (neg && digits == b"0") {
            return None;
        }
        if !matches!(rest.get(n), Some(b',' | b'}')) {
            return None;
        }
        self.i += n;
        let v = digits
            .iter()
            .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
        T::try_from(if neg { -v } else { v }).ok()
    }

    fn int<T: TryFrom<i64>>(&mut self, key: &str) -> Option<T> {
        self.key(key)?;
        self.number()
    }

    fn opt_int<T: TryFrom<i64>>(&mut self, key: &str) -> Option<Option<T>> {
        self.key(key)?;
        if self.lit(b"null").is_some() {
            return Some(None);
        }
        self.number().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the derive makes of `line` (the reference).
    fn derived(line: &[u8]) -> Option<Event> {
        serde_json::from_slice(line).ok()
    }

    fn written(ev: &Event) -> String {
        super::super::line_at(ev, "2026-01-01T00:00:00.000Z").unwrap()
    }

    /// Any text (quotes, backslashes and non-ASCII included), or plain text only (what
    /// task ids, worker ids and reasons mostly are).
    fn text(plain: bool) -> &'static str {
        if plain {
            "[a-z0-9é: -]{0,8}"
        } else {
            "[a-z0-9\"\\\\\té -]{0,8}"
        }
    }

    /// Events of the four kinds read directly; `plain`: of text and numbers a direct
    /// read takes (no escapes, numbers under 2^53).
    fn hot_event(plain: bool) -> impl Strategy<Value = Event> {
        let text = text(plain);
        let opt_text = || prop::option::of(text);
        let big = if plain { 1u64 << 53 } else { u64::MAX };
        let u64s = move || 0..=big;
        let reason = prop::sample::select(vec![
            EndReason::Exited,
            EndReason::Failed,
            EndReason::TimedOut,
            EndReason::WorkerLost,
            EndReason::Reassigned,
            EndReason::Cancelled,
            EndReason::Lost,
            EndReason::Stale,
            EndReason::Interrupted,
        ]);
        let state = prop::sample::select(vec![
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Skipped,
            TaskState::Cancelled,
            TaskState::Lost,
        ]);
        prop_oneof![
            (text, any::<u32>(), text, u64s()).prop_map(|(task, attempt, worker, seq)| {
                Event::TaskAssigned {
                    task,
                    attempt,
                    worker,
                    seq,
                }
            }),
            (
                text,
                any::<u32>(),
                text,
                any::<Option<u32>>(),
                prop::option::of(u64s()),
                opt_text()
            )
                .prop_map(|(task, attempt, worker, pid, proc_start, boot_id)| {
                    Event::TaskStarted {
                        task,
                        attempt,
                        worker,
                        pid,
                        proc_start,
                        boot_id,
                    }
                }),
            (text, any::<u32>(), opt_text(), reason).prop_map(|(task, attempt, worker, reason)| {
                Event::AttemptEnded {
                    task,
                    attempt,
                    worker,
                    reason,
                }
            }),
            (
                text,
                any::<u32>(),
                opt_text(),
                state,
                any::<Option<i32>>(),
                opt_text()
            )
                .prop_map(|(task, attempt, worker, state, exit_code, reason)| {
                    Event::TaskFinished {
                        task,
                        attempt,
                        worker,
                        state,
                        exit_code,
                        reason,
                    }
                }),
        ]
    }

    proptest! {
        /// A line as the journal writes it reads as what was written; one of plain
        /// text and numbers is read directly.
        #[test]
        fn written_lines_read_as_the_event(ev in hot_event(false), plain in hot_event(true)) {
            let line = written(&ev);
            prop_assert_eq!(event(line.as_bytes()), Some(ev.clone()));
            if let Some(d) = direct(line.as_bytes()) {
                prop_assert_eq!(d, ev);
            }
            let line = written(&plain);
            prop_assert_eq!(direct(line.as_bytes()), Some(plain));
        }

        /// Any change to such a line (a byte cut, dropped or replaced) is read as the
        /// derive reads it: accepted as the same event, or refused by both.
        #[test]
        fn a_damaged_line_is_read_as_the_derive_reads_it(
            ev in hot_event(false),
            at in any::<prop::sample::Index>(),
            what in 0u8..3,
            byte in prop::sample::select(b"{}[]\",:0-9anulx \\".to_vec()),
        ) {
            let mut line = written(&ev).into_bytes();
            let i = at.index(line.len());
            match what {
                0 => line.truncate(i),
                1 => {
                    line.remove(i);
                }
                _ => line[i] = byte,
            }
            prop_assert_eq!(event(&line), derived(&line));
        }
    }

    /// Lines the journal does not write but a person or another version may: fields
    /// left out, added, repeated, in another order, `event` not second.
    #[test]
    fn odd_lines_are_read_as_the_derive_reads_them() {
        let lines = [
            // Defaults and absent options.
            r#"{"ts":"t","event":"task_assigned","task":"a","attempt":1,"worker":"w1"}"#,
            r#"{"ts":"t","event":"task_started","task":"a","attempt":1,"worker":"w1"}"#,
            r#"{"ts":"t","event":"attempt_ended","task":"a","attempt":1,"reason":"exited"}"#,
            r#"{"ts":"t","event":"task_finished","task":"a","attempt":1,"state":"failed"}"#,
            // A field more, a field repeated, `event` repeated or different.
            r#"{"ts":"t","event":"task_assigned","task":"a","attempt":1,"worker":"w","x":[1]}"#,
            r#"{"ts":"t","event":"task_assigned","task":"a","task":"b","attempt":1,"worker":"w"}"#,
            r#"{"ts":"t","event":"task_assigned","event":"task_assigned","task":"a","attempt":1,"worker":"w"}"#,
            r#"{"ts":"t","event":"task_assigned","event":"gate_waiting","gate":"g"}"#,
            // Wrong types, a missing field, a bad enum value.
            r#"{"ts":"t","event":"task_assigned","task":"a","attempt":-1,"worker":"w"}"#,
            r#"{"ts":"t","event":"task_assigned","task":"a","attempt":1.5,"worker":"w"}"#,
            r#"{"ts":"t","event":"task_started","task":"a","attempt":1}"#,
            r#"{"ts":"t","event":"attempt_ended","task":"a","attempt":1,"reason":"nope"}"#,
            r#"{"ts":"t","event":"task_finished","task":null,"attempt":1,"state":"failed"}"#,
            // `ts` with an escape, elsewhere, or absent; `event` first.
            r#"{"ts":"a\"b","event":"task_assigned","task":"a","attempt":1,"worker":"w"}"#,
            r#"{"ts":"a\\","event":"task_assigned","task":"a","attempt":1,"worker":"w"}"#,
            r#"{"event":"task_assigned","ts":"t","task":"a","attempt":1,"worker":"w"}"#,
            r#"{"event":"task_assigned","task":"a","attempt":1,"worker":"w"}"#,
            r#"{"ts":"t","event":"task_assigned","task":"a","attempt":1,"worker":"w"} x"#,
            r#"{"ts":"t","event":"session_frozen","why":"x","emergency":false}"#,
        ];
        for l in lines {
            assert_eq!(event(l.as_bytes()), derived(l.as_bytes()), "{l}");
        }
        // Those that are events at all were read.
        assert!(event(lines[0].as_bytes()).is_some());
        assert!(event(lines[15].as_bytes()).is_some());
    }
}
