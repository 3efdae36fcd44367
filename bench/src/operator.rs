//! The real `secretsync controller` as a separate process, and its Prometheus metrics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::sys;

/// A running operator, killed on drop.
pub struct Operator {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT/metrics`.
    pub metrics_url: String,
    http: reqwest::Client,
    /// Its log file.
    pub log: PathBuf,
}

impl Operator {
    /// Starts `bin controller` against `kubeconfig` with extra flags; logs and audit go into `dir`.
    /// The replica is `secretsync-bench` unless `extra` names another `--pod-name` (its lease
    /// identity and audit actor).
    pub fn start(
        bin: &Path,
        kubeconfig: &Path,
        dir: &Path,
        tag: &str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let port = testkit::net::try_free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join(format!("operator-{tag}.log"));
        let file = std::fs::File::create(&log)?;
        // clap refuses a flag given twice: the default name only when `extra` has none.
        let pod_name: &[&str] = if extra.iter().any(|a| a == "--pod-name") {
            &[]
        } else {
            &["--pod-name", "secretsync-bench"]
        };
        let child = Command::new(bin)
            .arg("controller")
            .args(["--allow-inline-secrets", "--log-format", "json"])
            .args(["--metrics-addr", &addr, "--health-addr", &addr])
            .args(["--pod-namespace", crate::objects::CONTROLLER_NS])
            .args(pod_name)
            .arg("--audit-file")
            .arg(dir.join(format!("audit-{tag}.jsonl")))
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("SECRETSYNC_E2E_KUBECONFIG")
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child: Some(child),
            metrics_url: format!("http://{addr}/metrics"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            log,
        })
    }

    /// The operator's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Memory and CPU now.
    pub fn sample(&self, ticks: f64) -> anyhow::Result<sys::ProcSample> {
        let pid = self.pid();
        sys::sample(pid, ticks)
            .with_context(|| format!("operator (pid {pid}) is gone; see {}", self.log.display()))
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let text = self
            .http
            .get(&self.metrics_url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }

    /// Scrapes until `done(metrics)` holds, every 50 ms, at most `timeout`. Returns the time it took
    /// (from the call) and the last scrape.
    pub async fn wait_metrics(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Metrics) -> bool,
    ) -> anyhow::Result<(Duration, Metrics)> {
        let t0 = Instant::now();
        let deadline = t0 + timeout;
        let mut last = Metrics::default();
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                bail!(
                    "operator exited ({st}) while waiting for {what}; see {}",
                    self.log.display()
                );
            }
            if let Ok(m) = self.metrics().await {
                if done(&m) {
                    return Ok((t0.elapsed(), m));
                }
                last = m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "timed out after {timeout:?} waiting for {what} (ready={}, reconciles={}); see {}",
            last.ready(),
            last.reconciles(),
            self.log.display()
        )
    }

    /// Whether the process has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Sends `signal` (a `kill` signal name: `STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid();
        let st = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()?;
        if !st.success() {
            bail!("kill -{signal} {pid} failed ({st})");
        }
        Ok(())
    }

    /// SIGKILL at once (no lease release, no drain), and reap.
    pub fn kill_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < grace {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One scrape of the operator's metrics: `(name, labels, value)` samples.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    samples: Vec<(String, String, f64)>,
}

impl Metrics {
    /// Parses the OpenMetrics text exposition.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let value: f64 = value.parse().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.to_string(), labels.to_string(), value))
            })
            .collect();
        Self { samples }
    }

    /// Sum of a metric over the series whose labels contain every `filter` (`key="value"`).
    pub fn sum(&self, name: &str, filter: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && filter.iter().all(|f| l.contains(f)))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// SecretRefs the operator reports Ready.
    pub fn ready(&self) -> u64 {
        self.sum("secretsync_secretrefs", &["ready=\"true\""]) as u64
    }

    /// Successful reconciles so far.
    pub fn reconciles(&self) -> u64 {
        self.sum("secretsync_reconciles_total", &["result=\"success\""]) as u64
    }

    /// All reconciles so far.
    pub fn reconciles_all(&self) -> u64 {
        self.sum("secretsync_reconciles_total", &[]) as u64
    }

    /// Provider calls so far.
    pub fn provider_calls(&self) -> u64 {
        self.sum("secretsync_provider_calls_total", &[]) as u64
    }

    /// Secret writes so far.
    pub fn secret_writes(&self) -> u64 {
        self.sum("secretsync_secret_writes_total", &[]) as u64
    }

    /// One part of the operator's bookkeeping (`secretsync_bookkeeping{part}`).
    pub fn bookkeeping(&self, part: &str) -> f64 {
        self.sum("secretsync_bookkeeping", &[&format!("part=\"{part}\"")])
    }

    /// Status writes so far.
    pub fn status_writes(&self) -> u64 {
        self.sum("secretsync_status_writes_total", &[]) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openmetrics() {
        let m = Metrics::parse(
            "# HELP x\nsecretsync_reconciles_total{result=\"success\"} 12\nsecretsync_reconciles_total{result=\"StoreNotFound\"} 3\nsecretsync_secretrefs{ready=\"true\"} 7\nsecretsync_secret_writes_total 4\n# EOF\n",
        );
        assert_eq!(m.reconciles(), 12);
        assert_eq!(m.reconciles_all(), 15);
        assert_eq!(m.ready(), 7);
        assert_eq!(m.secret_writes(), 4);
    }
}
