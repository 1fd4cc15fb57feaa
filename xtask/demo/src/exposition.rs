//! The Prometheus text exposition format, read into samples: what the demos summarise and the
//! cardinality check counts.
//!
//! Read here rather than by a crate: the `prometheus` crate only writes text, and
//! `prometheus-parse` 0.2.5 (its regex takes a label set up to the first `}`) drops every series
//! of the gateway's `http_route="/v1/{*path}"`, splits label values at `,` and `=`, and keeps
//! their escapes.

/// One sample: metric name, labels as written, value.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: String,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        let start = self.labels.find(&format!("{key}=\""))? + key.len() + 2;
        let end = self.labels[start..].find('"')? + start;
        Some(&self.labels[start..end])
    }

    /// Every label as (name, value), escapes (`\"`, `\\`, `\n`) undone.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let inner = self
            .labels
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}');
        let mut pairs = Vec::new();
        let mut rest = inner;
        while let Some((name, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, other)) => value.push(other),
                        None => {}
                    },
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            pairs.push((
                name.trim().trim_start_matches(',').trim().to_string(),
                value,
            ));
            rest = &after[end..];
        }
        pairs
    }
}

pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.find('{') {
                Some(i) => (&head[..i], &head[i..]),
                None => (head, ""),
            };
            Some(Sample {
                name: name.to_string(),
                labels: labels.to_string(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_found_by_key() {
        let samples =
            parse_metrics("x_total{outcome=\"failure\",reason=\"service_unavailable\"} 3\n");
        assert_eq!(samples[0].label("reason"), Some("service_unavailable"));
        assert_eq!(samples[0].value, 3.0);
    }
}
