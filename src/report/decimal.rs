//! Sums of JSON numbers that print what a person would write: `0.25 + 0.25 + 0.25` is
//! `0.75`, not `0.7500000000000001`.
//!
//! Why not add `f64`s: the numbers in results are decimal text (`0.1`, `19.99`), most of
//! which no binary fraction holds exactly, and adding the nearest binary values drifts
//! away from the decimal sum. So each number is taken as the decimal its JSON text says
//! (the shortest text that reads back as it: what serde_json prints), summed exactly as an
//! integer scaled by a power of ten, and the exact sum is turned into the nearest `f64`
//! only at the end, which prints as that decimal whenever it has at most 15 significant
//! digits. A sum that does not fit (exponents too far apart, more than 38 digits) falls
//! back to compensated floating-point addition, which is as close as an `f64` can be.

use serde_json::{Number, Value};

/// `mant * 10^exp`, exactly. Normalised: no trailing zero in `mant`, `exp` 0 for zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dec {
    mant: i128,
    exp: i32,
}

fn pow10(n: i32) -> Option<i128> {
    u32::try_from(n).ok().and_then(|n| 10i128.checked_pow(n))
}

impl Dec {
    const ZERO: Dec = Dec { mant: 0, exp: 0 };

    fn normal(mut self) -> Dec {
        if self.mant == 0 {
            return Dec::ZERO;
        }
        while self.mant % 10 == 0 {
            self.mant /= 10;
            self.exp += 1;
        }
        self
    }

    /// The decimal a JSON number's text says (`-12.5e-3`); `None` for what is not one
    /// or does not fit.
    fn parse(text: &str) -> Option<Dec> {
        let (neg, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (num, e) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut mant: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mant = mant.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let exp = e.checked_sub(i32::try_from(frac.len()).ok()?)?;
        Some(
            Dec {
                mant: if neg { -mant } else { mant },
                exp,
            }
            .normal(),
        )
    }

    fn of(n: &Number) -> Option<Dec> {
        match n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)) {
            Some(mant) => Some(Dec { mant, exp: 0 }.normal()),
            None => Dec::parse(&n.to_string()),
        }
    }

    fn add(self, o: Dec) -> Option<Dec> {
        let exp = self.exp.min(o.exp);
        let a = self.mant.checked_mul(pow10(self.exp - exp)?)?;
        let b = o.mant.checked_mul(pow10(o.exp - exp)?)?;
        Some(
            Dec {
                mant: a.checked_add(b)?,
                exp,
            }
            .normal(),
        )
    }

    /// As JSON: an integer when it is one and fits, else the nearest `f64`.
    fn to_value(self) -> Option<Value> {
        if self.exp >= 0 {
            let v = self.mant.checked_mul(pow10(self.exp)?)?;
            if let Ok(i) = i64::try_from(v) {
                return Some(Value::from(i));
            }
            if let Ok(u) = u64::try_from(v) {
                return Some(Value::from(u));
            }
        }
        // Rust reads decimal text to the nearest f64, which serde_json prints as the
        // shortest text that reads back as it: the decimal itself, for 15 digits or fewer.
        let f: f64 = format!("{}e{}", self.mant, self.exp).parse().ok()?;
        Number::from_f64(f).map(Value::Number)
    }
}

/// The running sum of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Sum {
    /// The exact sum, while every number so far fitted.
    exact: Option<Dec>,
    /// Neumaier's compensated sum and its running compensation: the fallback.
    float: f64,
    compensation: f64,
}

impl Default for Sum {
    fn default() -> Sum {
        Sum {
            exact: Some(Dec::ZERO),
            float: 0.0,
            compensation: 0.0,
        }
    }
}

impl Sum {
    pub fn add(&mut self, n: &Number) {
        self.exact = self.exact.and_then(|s| s.add(Dec::of(n)?));
        let x = n.as_f64().unwrap_or(0.0);
        let t = self.float + x;
        self.compensation += if self.float.abs() >= x.abs() {
            (self.float - t) + x
        } else {
            (x - t) + self.float
        };
        self.float = t;
    }

    /// The sum as JSON (`null` only for a sum beyond the largest `f64`).
    pub fn value(&self) -> Value {
        self.exact
            .and_then(Dec::to_value)
            .or_else(|| Number::from_f64(self.float + self.compensation).map(Value::Number))
            .unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(texts: &[&str]) -> String {
        let mut s = Sum::default();
        for t in texts {
            let v: Value = serde_json::from_str(t).unwrap();
            s.add(v.as_number().unwrap());
        }
        s.value().to_string()
    }

    #[test]
    fn decimals_add_up_as_written() {
        assert_eq!(sum(&["0.25", "0.25", "0.25"]), "0.75");
        assert_eq!(sum(&["0.1", "0.2"]), "0.3");
        assert_eq!(sum(&["19.99"; 3]), "59.97");
        assert_eq!(sum(&["0.1"; 10]), "1");
        assert_eq!(sum(&["10", "2.5", "-0.5"]), "12");
        assert_eq!(sum(&["1e-7", "2e-7"]), "3e-7");
        assert_eq!(sum(&["-0.3", "0.1"]), "-0.2");
        assert_eq!(sum(&[]), "0");
    }

    #[test]
    fn integers_stay_integers_and_large_ones_do_not_overflow() {
        assert_eq!(sum(&["10", "20", "30"]), "60");
        let max = i64::MAX.to_string();
        assert_eq!(sum(&[&max, "1"]), (i64::MAX as u64 + 1).to_string());
        let umax = u64::MAX.to_string();
        // Past u64: the nearest f64.
        assert_eq!(sum(&[&umax, &umax]), "3.6893488147419103e+19");
    }

    #[test]
    fn numbers_too_far_apart_fall_back_to_a_compensated_float_sum() {
        assert_eq!(sum(&["1e300", "1e-300"]), "1e+300");
        assert_eq!(sum(&["1e308", "1e308"]), "null");
        assert_eq!(sum(&["1e200", "1", "-1e200"]), "1.0", "compensated");
    }

    #[test]
    fn the_text_of_a_number_parses_as_its_decimal() {
        assert_eq!(Dec::parse("12.50"), Some(Dec { mant: 125, exp: -1 }));
        assert_eq!(Dec::parse("-1.5e3"), Some(Dec { mant: -15, exp: 2 }));
        assert_eq!(Dec::parse("0.0"), Some(Dec::ZERO));
        assert_eq!(Dec::parse("1E-2"), Some(Dec { mant: 1, exp: -2 }));
        for bad in ["", ".5", "1.2.3", "e5", "1e", "x", "-"] {
            assert_eq!(Dec::parse(bad), None, "{bad}");
        }
    }
}
