//! Go's `%v` rendering of dynamic values (what `fmt.Println` prints for an `any`), so that
//! `qtalk check` prints exactly what the reference prints: `map[foo:bar]`, `[1 2 3]`,
//! `<nil>`, `1e+06`.
//!
//! Also [`same_value`], the comparison the checks use: equality as a Go peer sees it, where an
//! integer may come back as a float holding the same number and map order does not matter.

use qtalk::Value;

/// Renders `v` as Go's `fmt.Sprint` renders the equivalent `any`.
///
/// ```
/// use qtalk::Value;
/// use qtalk_cli::gofmt::go_format;
/// let map = Value::Map(vec![(Value::from("foo"), Value::from("bar"))]);
/// assert_eq!(go_format(&map), "map[foo:bar]");
/// assert_eq!(go_format(&Value::Array(vec![1.into(), 2.into(), 3.into()])), "[1 2 3]");
/// assert_eq!(go_format(&Value::Null), "<nil>");
/// assert_eq!(go_format(&Value::Float(1e6)), "1e+06");
/// assert_eq!(go_format(&Value::Float(100.0)), "100");
/// ```
pub fn go_format(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&go_float(*f)),
        Value::Text(s) => out.push_str(s),
        Value::Bytes(b) => {
            out.push('[');
            for (i, byte) in b.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&byte.to_string());
            }
            out.push(']');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(e, out);
            }
            out.push(']');
        }
        Value::Map(m) => {
            // Go's fmt sorts map keys: numbers numerically, strings lexically.
            let mut entries: Vec<(String, &Value, &Value)> =
                m.iter().map(|(k, v)| (go_format(k), k, v)).collect();
            if m.iter().all(|(k, _)| k.as_f64().is_some()) {
                entries.sort_by(|a, b| {
                    let (x, y) = (a.1.as_f64().unwrap_or(0.0), b.1.as_f64().unwrap_or(0.0));
                    x.total_cmp(&y)
                });
            } else {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push_str("map[");
            for (i, (k, _, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&k);
                out.push(':');
                write_value(v, out);
            }
            out.push(']');
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, which `%v` uses: the shortest digits that
/// round-trip, in exponent form when the decimal exponent is below -4 or at least 6 (`1e+06`,
/// `123456`, `1.5e-05`, `0.0001`), the exponent with a sign and at least two digits.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde±x".
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// Whether a value came back unchanged, as far as a round trip through a Go peer can tell:
/// numbers compare by value (an integer may return as a float), map entries in any order.
///
/// ```
/// use qtalk::Value;
/// use qtalk_cli::gofmt::same_value;
/// assert!(same_value(&Value::Int(100), &Value::Float(100.0)));
/// assert!(!same_value(&Value::Int(100), &Value::Int(101)));
/// ```
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .any(|(k2, v2)| same_value(k, k2) && same_value(v, v2))
                })
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_go() {
        for (f, s) in [
            (100.0, "100"),
            (1.5, "1.5"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000015, "1.5e-05"),
            (-2.5, "-2.5"),
            (12.375, "12.375"),
            (1e100, "1e+100"),
            (-0.0, "-0"),
        ] {
            assert_eq!(go_float(f), s, "{f}");
        }
        assert_eq!(go_float(f64::NAN), "NaN");
        assert_eq!(go_float(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn composites_like_go() {
        let v = Value::Array(vec![
            Value::Null,
            Value::Bool(true),
            Value::from("a b"),
            Value::Bytes(vec![1, 2]),
            Value::Map(vec![
                (Value::from("z"), Value::Int(1)),
                (Value::from("a"), Value::Array(vec![])),
            ]),
        ]);
        assert_eq!(go_format(&v), "[<nil> true a b [1 2] map[a:[] z:1]]");
        let m = Value::Map(vec![
            (Value::Int(10), Value::from("x")),
            (Value::Int(9), Value::from("y")),
        ]);
        assert_eq!(go_format(&m), "map[9:y 10:x]");
    }

    #[test]
    fn sameness() {
        let a = Value::Map(vec![
            (Value::from("a"), Value::Int(1)),
            (Value::from("b"), Value::Int(2)),
        ]);
        let b = Value::Map(vec![
            (Value::from("b"), Value::Float(2.0)),
            (Value::from("a"), Value::Int(1)),
        ]);
        assert!(same_value(&a, &b));
        assert!(!same_value(&a, &Value::Map(vec![])));
        assert!(!same_value(&Value::from("1"), &Value::Int(1)));
    }
}
