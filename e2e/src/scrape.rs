//! One scrape of a process's `/metrics`, in the Prometheus text format.

use std::collections::BTreeSet;

use reqwest::StatusCode;

/// One sample line of a scrape: series name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape of a process's `/metrics` (Prometheus text format).
#[derive(Debug, Clone)]
pub struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// GET `{base}/metrics`; panics unless it answers 200 in the text format.
    pub async fn of(base: &str) -> Scrape {
        let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        Scrape::parse(&response.text().await.unwrap())
    }

    /// Parses the exposition format (label values here never hold `,` or `"`).
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').unwrap();
                        (key.to_owned(), value.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels, value.parse::<f64>().unwrap())
            })
            .collect();
        Scrape { samples }
    }

    /// The sum of every `name` series carrying all of `labels` (0 when none does).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, have, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// Whether any series is called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// Every series name of this scrape.
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|(n, _, _)| n.clone()).collect()
    }
}
