//! Metrics and health: what leasehold reports about its work.
//!
//! Every metric goes through the [`metrics`] facade, so it reaches whatever recorder the application
//! installed; leasehold never installs one itself, nor a tracing subscriber. [`catalog`] lists each
//! metric with its type, unit and labels (`docs/metrics.md` is the same table for readers). Labels have
//! small, bounded value sets: backend, queue, kind, schedule, lock, outcome; never a task id.
//!
//! Install the recorder before starting workers and schedulers: they register their hot-path metrics
//! once, when they start. With the `admin` feature, [`prometheus_builder`] gives a Prometheus recorder
//! whose histograms have the catalog's buckets, and [`crate::admin`] serves it over HTTP.
//!
//! Each job also runs in a `leasehold.job` tracing span with its task id, kind, queue, attempt and
//! fencing token; its outcome and error are recorded on the span.

pub mod catalog;
pub(crate) mod record;

pub use catalog::{CATALOG, MetricDef, MetricType};

/// Registers every metric's description and unit with the installed recorder, so the exposition
/// carries `# HELP` lines. Workers and schedulers call it when they start; calling it again is harmless.
pub fn describe() {
    for m in CATALOG {
        let unit = match m.unit {
            "seconds" => Some(metrics::Unit::Seconds),
            "1" => Some(metrics::Unit::Count),
            _ => None,
        };
        match (m.kind, unit) {
            (MetricType::Counter, Some(u)) => metrics::describe_counter!(m.name, u, m.help),
            (MetricType::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (MetricType::Gauge, Some(u)) => metrics::describe_gauge!(m.name, u, m.help),
            (MetricType::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (MetricType::Histogram, Some(u)) => metrics::describe_histogram!(m.name, u, m.help),
            (MetricType::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// A Prometheus recorder builder with the catalog's histogram buckets (Prometheus histograms, not
/// summaries). Install it from the application: `prometheus_builder().install_recorder()`.
#[cfg(feature = "admin")]
pub fn prometheus_builder() -> metrics_exporter_prometheus::PrometheusBuilder {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let mut b = PrometheusBuilder::new();
    for m in CATALOG.iter().filter(|m| m.kind == MetricType::Histogram) {
        b = b
            .set_buckets_for_metric(Matcher::Full(m.name.to_owned()), m.buckets)
            .expect("every histogram of the catalog has buckets");
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in CATALOG {
            assert!(m.name.starts_with("leasehold_"), "{}", m.name);
            assert!(seen.insert(m.name), "{} is listed twice", m.name);
            assert_eq!(m.kind == MetricType::Counter, m.name.ends_with("_total"), "{}", m.name);
            assert_eq!(m.kind == MetricType::Histogram, !m.buckets.is_empty(), "{}", m.name);
            if m.unit == "seconds" {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
            assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{} buckets must increase", m.name);
            assert!(!m.labels.contains(&"task_id"), "{} has an unbounded label", m.name);
        }
    }
}
