//! Which exposition format a scraper gets: the Prometheus text format (0.0.4) unless its `Accept`
//! header ranks OpenMetrics at least as high as `text/plain`. Prometheus itself sends
//! `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`;
//! curl sends `*/*` and gets the text format.

use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`, ending in `# EOF`.
    OpenMetrics,
}

const OPENMETRICS: &str = "application/openmetrics-text";
const TEXT: &str = "text/plain";

impl Format {
    /// The format `accept` (the request's `Accept` header, if any) asks for.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case(OPENMETRICS) {
                openmetrics = openmetrics.max(q);
            } else if media.eq_ignore_ascii_case(TEXT) {
                text = text.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    pub(super) fn encode(self, registry: &Registry) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String fails only if a metric's own encoding fails, which the
        // collector's never does: what was written is still the best answer.
        let _ = match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, registry),
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for_at_least_as_much_as_text() {
        let prometheus_2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let cases = [
            (None, Format::Prometheus),
            (Some("*/*"), Format::Prometheus),
            (Some("text/plain"), Format::Prometheus),
            (Some(prometheus_2), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (
                Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
                Format::Prometheus,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Prometheus),
            (
                Some("application/openmetrics-text;q=nonsense"),
                Format::OpenMetrics,
            ),
            (Some(",;;,q=,\u{0}"), Format::Prometheus),
        ];
        for (accept, format) in cases {
            assert_eq!(Format::negotiate(accept), format, "{accept:?}");
        }
    }
}
