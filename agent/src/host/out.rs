//! A small builder that groups samples into metric families and stamps the agent's static
//! labels on every sample, so a scrape of `/metrics` and a remote-write push carry the same
//! label sets.

use std::collections::HashMap;
use tingzhen_core::Labels;
use tingzhen_core::exposition::{MetricFamily, MetricType};

/// Collects families for one collection. Samples of one family may arrive in any order; the
/// index keeps each family contiguous as the text format requires.
#[derive(Debug)]
pub struct Out<'a> {
    base: &'a Labels,
    families: Vec<MetricFamily>,
    index: HashMap<String, usize>,
}

impl<'a> Out<'a> {
    pub fn new(base: &'a Labels) -> Self {
        Self { base, families: Vec::new(), index: HashMap::new() }
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, MetricType::Gauge, labels, value);
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, MetricType::Counter, labels, value);
    }

    pub fn untyped(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, MetricType::Untyped, labels, value);
    }

    pub fn push(&mut self, name: &str, help: &str, kind: MetricType, labels: &[(&str, &str)], value: f64) {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.families.push(MetricFamily::new(name, help, kind));
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let mut l = self.base.clone();
        for (k, v) in labels {
            l.set(k, *v);
        }
        self.families[i].samples.push((l, value));
    }

    pub fn finish(self) -> Vec<MetricFamily> {
        self.families
    }
}
