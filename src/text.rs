//! Text a task wrote to its terminal, made safe to show elsewhere (the dashboard's log
//! view, a report's stderr excerpt): terminal escape sequences are recognised here, in
//! one place, so every reader drops the same ones.

use std::iter::Peekable;
use std::str::Chars;

/// Consume the rest of an escape sequence whose ESC was just read from `chars`: a CSI
/// (`ESC [`, parameters and intermediates, then one final byte in `@..~`), an OSC
/// (`ESC ]` up to BEL or ST, `ESC \`), or any other escape's one following character.
pub fn skip_escape(chars: &mut Peekable<Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
        Some(']') => {
            while let Some(c) = chars.next() {
                if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                    break;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                skip_escape(&mut chars);
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn csi_osc_and_short_escapes_are_skipped() {
        assert_eq!(visible("\x1b[1;31mred\x1b[0m!"), "red!");
        assert_eq!(visible("\x1b]0;title\x07a\x1b]8;;x\x1b\\b"), "ab");
        assert_eq!(visible("\x1b=keypad\x1bc"), "keypad");
        assert_eq!(visible("cut \x1b["), "cut ");
    }
}
