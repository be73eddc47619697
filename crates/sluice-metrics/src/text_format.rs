//! Writing the Prometheus text exposition format 0.0.4 (the format ingress-nginx serves).

use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
pub(crate) struct TextWriter {
    pub(crate) out: String,
}

impl TextWriter {
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
    }

    /// `_bucket` lines (cumulative, with `le` last, as client_golang writes it), `_sum` and
    /// `_count` of one histogram.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum: f64,
    ) {
        let bucket = format!("{name}_bucket");
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        let les: Vec<String> = bounds.iter().map(|b| go_float(*b)).collect();
        for (le, c) in les.iter().zip(cumulative) {
            with_le.push(("le", le));
            self.sample(&bucket, &with_le, *c);
            with_le.pop();
        }
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, count);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count);
    }
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float the way Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (what
/// client_golang puts in `le` and sample values), so `le="1e+06"` matches existing queries.
pub(crate) fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // strconv's 'g' with the shortest precision switches to an exponent below 1e-4 and from 1e6.
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

pub(crate) trait Value {
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        out.push_str(&go_float(*self));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_like_go_does() {
        assert_eq!(go_float(0.005), "0.005");
        assert_eq!(go_float(2.5), "2.5");
        assert_eq!(go_float(10.0), "10");
        assert_eq!(go_float(100_000.0), "100000");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1e7), "1e+07");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(123_456.0), "123456");
        assert_eq!(go_float(22_528_000.0), "2.2528e+07");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut w = TextWriter::default();
        w.sample("m", &[("path", "/a\"b\\c\nd")], 1u64);
        assert_eq!(w.out, "m{path=\"/a\\\"b\\\\c\\nd\"} 1\n");
    }
}
