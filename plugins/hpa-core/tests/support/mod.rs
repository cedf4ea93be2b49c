//! Fixture builders for HPA cases: a healthy workload by default, with
//! methods to bend exactly the property a case is about.
#![allow(dead_code)]

use scalegate_hpa::{HpaParams, Input, Metric, Output, Phase, Pod, PodSample, ScaleEvent, State, evaluate};

pub const NOW: i64 = 10_000_000_000;
pub const HOUR: i64 = 3_600_000;
pub const SEC: i64 = 1000;

pub struct Case {
    pub input: Input,
    pub params: String,
    pub state: Option<State>,
}

/// A running, ready pod started an hour ago, requesting 1 CPU and 1 GiB.
pub fn pod(name: &str) -> Pod {
    Pod {
        name: name.into(),
        phase: Phase::Running,
        ready: Some(true),
        ready_transition_ms: Some(NOW - HOUR + 5 * SEC),
        start_ms: Some(NOW - HOUR),
        terminating: false,
        cpu_request: Some(1.0),
        memory_request: Some(1073741824.0),
        requests: vec![],
    }
}

/// A sample of the pod at `index` in the pod list.
pub fn sample(index: usize, milli: i64) -> PodSample {
    PodSample { pod: index, value: milli as f64 / 1000.0, timestamp_ms: NOW - 15 * SEC, window_ms: 30 * SEC }
}

impl Case {
    /// `usages.len()` pods named p0.. with these CPU usages (milli-cores),
    /// `current_replicas` = number of pods, bounds 1..=100, CPU target `target`%.
    pub fn cpu(usages: &[i64], target: i32) -> Case {
        let pods: Vec<Pod> = (0..usages.len()).map(|i| pod(&format!("p{i}"))).collect();
        let samples = usages.iter().enumerate().map(|(i, u)| sample(i, *u)).collect();
        Case {
            input: Input {
                now_ms: NOW,
                current_replicas: usages.len() as i32,
                status_replicas: usages.len() as i32,
                min_replicas: 1,
                max_replicas: 100,
                pods,
                metrics: vec![Metric {
                    name: "cpu".into(),
                    value: usages.iter().sum::<i64>() as f64 / 1000.0,
                    pods: samples,
                }],
                scale_events: vec![],
            },
            params: format!(
                r#"{{"metrics":[{{"type":"Resource","resource":{{"name":"cpu","target":{{"type":"Utilization","averageUtilization":{target}}}}}}}]}}"#
            ),
            // an existing recommendation list that does not hold anything back
            state: Some(State::default()),
        }
    }

    /// A workload with `pods` ready pods and no metrics yet.
    pub fn with_pods(count: usize) -> Case {
        Case {
            input: Input {
                now_ms: NOW,
                current_replicas: count as i32,
                status_replicas: count as i32,
                min_replicas: 1,
                max_replicas: 100,
                pods: (0..count).map(|i| pod(&format!("p{i}"))).collect(),
                metrics: vec![],
                scale_events: vec![],
            },
            params: "{}".into(),
            state: Some(State::default()),
        }
    }

    pub fn params(mut self, json: &str) -> Case {
        self.params = json.into();
        self
    }

    pub fn current(mut self, replicas: i32) -> Case {
        self.input.current_replicas = replicas;
        self
    }

    pub fn bounds(mut self, min: i32, max: i32) -> Case {
        self.input.min_replicas = min;
        self.input.max_replicas = max;
        self
    }

    pub fn metric(mut self, name: &str, value: f64) -> Case {
        self.input.metrics.push(Metric { name: name.into(), value, pods: vec![] });
        self
    }

    fn index_of(&self, pod: &str) -> usize {
        self.input.pods.iter().position(|p| p.name == pod).unwrap_or_else(|| panic!("no pod {pod}"))
    }

    pub fn per_pod_metric(mut self, name: &str, values: &[(&str, i64)]) -> Case {
        let pods = values.iter().map(|(p, v)| sample(self.index_of(p), *v)).collect();
        self.input.metrics.push(Metric { name: name.into(), value: 0.0, pods });
        self
    }

    pub fn pod_mut(mut self, index: usize, f: impl FnOnce(&mut Pod)) -> Case {
        f(&mut self.input.pods[index]);
        self
    }

    pub fn drop_sample(mut self, pod: &str) -> Case {
        let index = self.index_of(pod);
        for metric in &mut self.input.metrics {
            metric.pods.retain(|s| s.pod != index);
        }
        self
    }

    pub fn sample_mut(mut self, pod: &str, f: impl FnOnce(&mut PodSample)) -> Case {
        let index = self.index_of(pod);
        let sample = self.input.metrics[0].pods.iter_mut().find(|s| s.pod == index).expect("sample");
        f(sample);
        self
    }

    pub fn add_pod(mut self, pod: Pod) -> Case {
        self.input.pods.push(pod);
        self
    }

    pub fn recommendations(mut self, recs: &[(i32, i64)]) -> Case {
        self.state = Some(State {
            recommendations: recs
                .iter()
                .map(|(r, age)| scalegate_hpa::Recommendation { replicas: *r, timestamp_ms: NOW - age })
                .collect(),
        });
        self
    }

    pub fn first_reconcile(mut self) -> Case {
        self.state = None;
        self
    }

    /// A scale from `from` to `to`, `age_ms` ago.
    pub fn scaled(mut self, from: i32, to: i32, age_ms: i64) -> Case {
        self.input.scale_events.push(ScaleEvent { timestamp_ms: NOW - age_ms, from_replicas: from, to_replicas: to });
        self
    }

    pub fn run(&self) -> Output {
        let params = HpaParams::parse(&self.params).expect("params parse");
        evaluate(&params, &self.input, self.state.clone())
    }

    /// The desired replica count; panics with the reason when there is none.
    pub fn desired(&self) -> i32 {
        let out = self.run();
        out.desired_replicas.unwrap_or_else(|| panic!("no desired replicas: {}", out.reason))
    }
}

pub fn behavior(json: &str) -> String {
    format!(
        r#"{{"metrics":[{{"type":"Resource","resource":{{"name":"cpu","target":{{"type":"Utilization","averageUtilization":50}}}}}}],"behavior":{json}}}"#
    )
}
