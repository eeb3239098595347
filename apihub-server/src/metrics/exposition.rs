//! Prometheus' text exposition format (version 0.0.4), written by hand: a dozen metric families
//! do not need a registry crate, and writing them here keeps the request path to bare atomics.

use std::fmt::{Display, Write};

/// A document being written.
#[derive(Default)]
pub(super) struct Exposition(String);

impl Exposition {
    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub(super) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample line with escaped label values.
    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{label}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// The text.
    pub(super) fn finish(self) -> String {
        self.0
    }
}

/// Milliseconds as a decimal number of seconds (`1500` → `1.5`), exactly.
pub(super) fn seconds(ms: u64) -> String {
    match ms % 1000 {
        0 => (ms / 1000).to_string(),
        frac => format!("{}.{}", ms / 1000, format!("{frac:03}").trim_end_matches('0')),
    }
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(5), "0.005");
        assert_eq!(seconds(250), "0.25");
        assert_eq!(seconds(1_500), "1.5");
        assert_eq!(seconds(300_000), "300");
    }
}
