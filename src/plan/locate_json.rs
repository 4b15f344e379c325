//! Where the values of a JSON plan are: a scanner that walks the text once and records
//! the byte offset of each value validation may refuse (the keys of [`Positions`]), so a
//! JSON plan's errors carry a line and column as a TOML plan's do. serde_json keeps no
//! positions of what it parsed, hence this.
//!
//! It reads only text serde_json already accepted as a plan, so it may give up (`None`)
//! on anything unexpected: the messages then name the value instead. Values it does not
//! need are skipped without recursion, so no nesting can exhaust the stack.

use super::locate::{BackoffPositions, GatePositions, Positions, Seg, TablePositions};

/// Where the value at `path` (from the root) starts, for the values [`Positions`] does not
/// keep (a template's strings, its matrix); `None` when there is none or the text is not
/// what it expects.
pub(super) fn value_pos(text: &str, path: &[Seg]) -> Option<usize> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
    };
    for seg in path {
        let mut found = None;
        // The walk stops (a `None` from the closure) at the entry sought; a key given
        // twice is its last, the one a map keeps.
        let _ = match *seg {
            Seg::Key(want) => s.object(|s, key, at| {
                if key == want {
                    found = Some(at);
                }
                s.skip_value()
            }),
            Seg::Index(want) => {
                let mut n = 0;
                s.array(|s, at| {
                    if n == want {
                        found = Some(at);
                        return None;
                    }
                    n += 1;
                    s.skip_value()
                })
            }
        };
        s.i = found?;
    }
    s.peek()?;
    Some(s.i)
}

/// The positions of a JSON plan's values, or `None` when the text is not what it expects.
pub(super) fn positions(text: &str) -> Option<Positions> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
    };
    let mut p = Positions::default();
    s.object(|s, key, at| {
        match key.as_str() {
            "name" => p.name = Some(at),
            "workers" => p.workers = Some(at),
            "lease" => p.lease = Some(at),
            "on_failure" => p.on_failure = Some(at),
            "cleanup_workers" => p.cleanup_workers = Some(at),
            "limits" if s.peek() == Some(b'{') => {
                return s.object(|s, key, at| {
                    match key.as_str() {
                        "memory" => p.limits_memory = Some(at),
                        "min_free_memory" => p.min_free_memory = Some(at),
                        _ => {}
                    }
                    s.skip_value()
                });
            }
            "defaults" if s.peek() == Some(b'{') => return s.table(&mut p.defaults),
            "resources" if s.peek() == Some(b'{') => {
                return s.object(|s, key, at| {
                    p.resources.push((key, at));
                    s.skip_value()
                });
            }
            "gate" if s.peek() == Some(b'[') => {
                return s.array(|s, _| {
                    let mut g = GatePositions::default();
                    if s.peek() == Some(b'{') {
                        s.gate(&mut g)?;
                    } else {
                        s.skip_value()?;
                    }
                    p.gate.push(g);
                    Some(())
                });
            }
            "task" if s.peek() == Some(b'[') => {
                return s.array(|s, _| {
                    let mut t = TablePositions::default();
                    if s.peek() == Some(b'{') {
                        s.table(&mut t)?;
                    } else {
                        s.skip_value()?;
                    }
                    p.task.push(t);
                    Some(())
                });
            }
            _ => {}
        }
        s.skip_value()
    })?;
    Some(p)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    /// The next byte after white space (not consumed).
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string token, decoded (keys may hold escapes).
    fn string(&mut self) -> Option<String> {
        let start = self.i;
        self.skip_string()?;
        serde_json::from_slice(&self.b[start..self.i]).ok()
    }

    /// Past a string token, the cursor on its opening quote.
    fn skip_string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
    }

    /// Past one value of any kind, counting brackets instead of recursing.
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => self.skip_string()?,
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.i += 1;
                }
                b',' | b':' if depth > 0 => self.i += 1,
                _ => {
                    // A number, `true`, `false` or `null`.
                    let start = self.i;
                    while self.i < self.b.len()
                        && !matches!(
                            self.b[self.i],
                            b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                        )
                    {
                        self.i += 1;
                    }
                    if self.i == start {
                        return None;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }

    /// An object: `each(scanner, key, offset of its value)` must consume the value.
    fn object(
        &mut self,
        mut each: impl FnMut(&mut Self, String, usize) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.peek()?;
            let key = self.string()?;
            self.eat(b':')?;
            self.peek()?;
            let at = self.i;
            each(self, key, at)?;
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    /// An array: `each(scanner, offset of the element)` must consume the element.
    fn array(&mut self, mut each: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.peek()?;
            let at = self.i;
            each(self, at)?;
            if self.eat(b',').is_none() {
                return self.eat(b']');
            }
        }
    }

    /// `defaults` or a task.
    fn table(&mut self, t: &mut TablePositions) -> Option<()> {
        self.object(|s, key, at| {
            match key.as_str() {
                "id" => t.id = Some(at),
                "timeout" => t.timeout = Some(at),
                "kill_grace" => t.kill_grace = Some(at),
                "cwd" => t.cwd = Some(at),
                "resources" => t.resources = Some(at),
                "on_failure" => t.on_failure = Some(at),
                "memory" => t.memory = Some(at),
                "cleanup" => t.cleanup = Some(at),
                "cleanup_delay" => t.cleanup_delay = Some(at),
                "cleanup_timeout" => t.cleanup_timeout = Some(at),
                "rollback" => t.rollback = Some(at),
                "emergency" => t.emergency = Some(at),
                "after" if s.peek() == Some(b'[') => return s.offsets(&mut t.after),
                "owns" if s.peek() == Some(b'[') => return s.offsets(&mut t.owns),
                "backoff" if s.peek() == Some(b'{') => return s.backoff(&mut t.backoff),
                _ => {}
            }
            s.skip_value()
        })
    }

    /// A `[[gate]]`.
    fn gate(&mut self, g: &mut GatePositions) -> Option<()> {
        self.object(|s, key, at| {
            match key.as_str() {
                "id" => g.id = Some(at),
                "run" => g.run = Some(at),
                "timeout" => g.timeout = Some(at),
                "after" if s.peek() == Some(b'[') => return s.offsets(&mut g.after),
                _ => {}
            }
            s.skip_value()
        })
    }

    /// An array, the offset of each element pushed to `out`.
    fn offsets(&mut self, out: &mut Vec<usize>) -> Option<()> {
        self.array(|s, at| {
            out.push(at);
            s.skip_value()
        })
    }

    fn backoff(&mut self, b: &mut BackoffPositions) -> Option<()> {
        self.object(|s, key, at| {
            match key.as_str() {
                "initial" => b.initial = Some(at),
                "max" => b.max = Some(at),
                "factor" => b.factor = Some(at),
                "jitter" => b.jitter = Some(at),
                _ => {}
            }
            s.skip_value()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offset of the `n`th occurrence (from 0) of `needle` in `text`.
    fn at(text: &str, needle: &str, n: usize) -> Option<usize> {
        text.match_indices(needle).nth(n).map(|(i, _)| i)
    }

    #[test]
    fn finds_each_value_that_validation_may_refuse() {
        let text = r#"{"name": "p", "workers": 2, "lease": "1s", "extra": {"task": [1, {"id": "no"}]},
 "defaults": {"timeout": "2s", "cwd": "d", "env": {"id": "x"}, "backoff": {"max": "3s", "jitter": 0.5}},
 "task": [
   {"id": "a", "run": "echo \"}]\"", "after": ["b", "signal:s"], "cwd": "/x",
    "kill_grace": "1s", "backoff": {"initial": "4s", "factor": 2}},
   {"cmd": [["nested"], {"x": [true, null, -1.5e3]}], "id": "b\u0041", "timeout": "5s"}
 ]}"#;
        let p = positions(text).expect("scans");
        assert_eq!(p.name, at(text, r#""p""#, 0));
        assert_eq!(p.workers, at(text, "2,", 0));
        assert_eq!(p.lease, at(text, r#""1s""#, 0));
        assert_eq!(p.defaults.timeout, at(text, r#""2s""#, 0));
        assert_eq!(p.defaults.cwd, at(text, r#""d""#, 0));
        assert_eq!(p.defaults.id, None, "an `id` inside env is not the table's");
        assert_eq!(p.defaults.backoff.max, at(text, r#""3s""#, 0));
        assert_eq!(p.defaults.backoff.jitter, at(text, "0.5", 0));
        assert_eq!(p.task.len(), 2);
        let a = &p.task[0];
        assert_eq!(a.id, at(text, r#""a""#, 0));
        assert_eq!(
            a.after,
            [
                at(text, r#""b""#, 0).unwrap(),
                at(text, r#""signal:s""#, 0).unwrap()
            ]
        );
        assert_eq!(a.cwd, at(text, r#""/x""#, 0));
        assert_eq!(a.kill_grace, at(text, r#""1s""#, 1));
        assert_eq!(a.backoff.initial, at(text, r#""4s""#, 0));
        assert_eq!(a.backoff.factor, at(text, "2}", 0));
        let b = &p.task[1];
        assert_eq!(b.id, at(text, r#""b\u0041""#, 0));
        assert_eq!(b.timeout, at(text, r#""5s""#, 0));
    }

    #[test]
    fn gives_up_on_what_is_not_a_plan_object() {
        assert_eq!(positions("[1]"), None);
        assert_eq!(positions("{\"name\": "), None);
        assert_eq!(positions(""), None);
        assert_eq!(positions("{}"), Some(Positions::default()));
    }
}
